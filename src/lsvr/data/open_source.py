"""Which source a path on the command line is: idx files, class folders, a flat folder with
a label file, or tar files. Above sources.py and labels.py, which it picks between (neither imports it).
"""

from __future__ import annotations

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
) -> Source:
    """The source at path: an idx images file, a folder of idx files (split picks one), class
    folders, a flat folder of images with a label file (`labels`), or tar files read in place
    (data/tar_source.py: ILSVRC2012's tars, WebDataset shards; a brace pattern names shards)."""
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
    source = FolderSource(path, classes)
    if not len(source):
        if any(looks_like_image(name) for name in list_folder(path)):
            raise InputError(f"{path}: images but no class folders: give their labels with --labels FILE")
        raise InputError(f"{path}: no images found (expected class folders of images, or idx files)")
    return source
