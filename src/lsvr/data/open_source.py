"""Which source a path on the command line is: idx files, class folders, a flat folder with
a label file, or tar files. Above sources.py and labels.py, which it picks between (neither imports it).
"""

from __future__ import annotations

import os
from pathlib import Path

from lsvr.data.image import looks_like_image
from lsvr.data.labels import labelled_folder
from lsvr.data.sources import FolderSource, IdxSource, Source, idx_splits, list_folder
from lsvr.data.tar_source import looks_like_tar_source, open_tar_source
from lsvr.errors import InputError


def open_source(
    path: Path,
    *,
    split: str | None = None,
    classes: list[str] | None = None,
    labels: Path | None = None,
    devkit_meta: Path | None = None,
    source_format: str = "auto",
    progress: bool = False,
    allow_empty_classes: bool = False,
) -> Source:
    """The source at path: an idx images file, a folder of idx files (split picks one), class
    folders, a flat folder of images with a label file (`labels`), or tar files read in place
    (data/tar_source.py: ILSVRC2012's tars, WebDataset shards; a brace pattern names shards).
    An empty class folder is refused unless allow_empty_classes."""
    if source_format != "auto" or looks_like_tar_source(str(path)):
        if path.is_dir() and idx_splits(path):
            raise InputError(f"{path}: a folder of idx files is not a tar source (--source-format is for tars)")
        return open_tar_source(str(path), source_format=source_format, classes=classes, labels=labels,
                               devkit_meta=devkit_meta, progress=progress)  # fmt: skip
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if labels is not None:
        if not path.is_dir():
            raise InputError(f"{path}: --labels needs a folder of images")
        return labelled_folder(path, labels, classes, devkit_meta)
    if path.is_file():
        if not any(stem in path.name for stem in ("images-idx3",)):
            raise InputError(f"{path}: expected an idx images file or a folder")
        return IdxSource(path, classes)
    splits = idx_splits(path)
    if splits:
        if split is None:
            split = "train" if "train" in splits else next(iter(splits))
        if split not in splits:
            raise InputError(f"{path}: no {split} idx files (has: {', '.join(splits)})")
        return IdxSource(splits[split], classes)
    source = FolderSource(path, classes, allow_empty=allow_empty_classes)
    if not len(source):
        if any(looks_like_image(name) for name in list_folder(path)):
            raise InputError(f"{path}: images but no class folders: give their labels with --labels FILE")
        raise InputError(f"{path}: no images found (expected class folders of images, or idx files)")
    return source


def check_options(path: Path, *, split: str | None, labels: Path | None, devkit_meta: Path | None,
                  allow_empty_classes: bool = False) -> None:  # fmt: skip
    """Refuse, naming why, a prepare option that does not apply to the source at path: it would
    be ignored without a word, or misread (--labels on class folders asked for a meta.mat)."""
    if devkit_meta is not None and labels is None:
        raise InputError(f"--devkit-meta {devkit_meta}: maps the ILSVRC2012_IDs of the devkit's ground truth"
                         " given with --labels; without --labels there is nothing to map")  # fmt: skip
    idx_folder = path.is_dir() and bool(idx_splits(path))
    if split is not None and not idx_folder:
        raise InputError(f"--split {split}: picks the train or test files of a folder of idx files; {path} is not"
                         " one")  # fmt: skip
    tars = looks_like_tar_source(str(path))
    if labels is not None and path.is_dir() and not tars:  # a tar source checks its own (data/tar_source.py)
        if idx_folder:
            raise InputError(f"--labels {labels}: {path} holds idx files, which carry their own labels")
        subfolders = any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path))
        if subfolders and not any(looks_like_image(name) for name in list_folder(path)):
            raise InputError(f"--labels {labels}: {path} holds class folders, whose names are the labels; --labels"
                             " labels a flat folder of images (ILSVRC2012's val/)")  # fmt: skip
    kind = ("tar files" if tars else "idx files" if idx_folder else "a file" if not path.is_dir()
            else "a flat folder of images (--labels)" if labels is not None else None)  # fmt: skip
    if allow_empty_classes and kind:
        raise InputError(f"--allow-empty-classes keeps the empty class folders of a class-folder tree; {path} is"
                         f" {kind}")  # fmt: skip
