"""Readers of raw inputs: idx files (MNIST / Fashion-MNIST) and class-folder trees of images.

A source lists its items (name, label) and decodes item i into an (H, W, C) uint8 array,
raising DecodeError with a reason for anything that cannot become an image (the decoding
itself, and its policy, are in data/image.py). Which source a path is: data/open_source.py.
"""

from __future__ import annotations

import gzip
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsvr.data.image import MAX_IMAGE_BYTES, decode_file, looks_like_image
from lsvr.errors import InputError

IDX_IMAGES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")


@dataclass
class Source(ABC):
    """A split of raw inputs: `names[i]`, `labels[i]`, `classes`, and `decode(i)`."""

    root: Path
    names: list[str]
    labels: np.ndarray
    classes: list[str]
    lost: str | None = None  # what of the source is missing, when it was cut short (a tar): prepare refuses it

    def __len__(self) -> int:
        return len(self.names)

    @abstractmethod
    def decode(self, i: int, min_side: int = 0, *, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
        """Item i as pixels, or DecodeError with the reason. A JPEG may be decoded at a
        reduced scale (1/2, 1/4, 1/8) as long as its shorter side stays >= min_side; an item
        of more than max_bytes is refused (too-large) without being read."""
        # -> (H, W, C) uint8, C in {1, 3}


# ---------------------------------------------------------------- idx (Fashion-MNIST)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) as a numpy array of its declared shape."""
    if path.suffix == ".gz":
        with gzip.open(path) as f:
            data = f.read()
    else:
        data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise InputError(f"{path}: not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise InputError(f"{path}: idx header declares {dims} but holds {body.size} bytes")
    return body.reshape(dims)


class IdxSource(Source):
    def __init__(self, images_path: Path, classes: list[str] | None) -> None:
        labels_path = _find(images_path.parent, images_path.name.replace("images-idx3", "labels-idx1"))
        if labels_path is None:
            raise InputError(f"{images_path}: no labels file beside it")
        self.images = read_idx(images_path)  # (N, H, W)
        labels = read_idx(labels_path).astype(np.int64)
        if len(labels) != len(self.images):
            raise InputError(f"{labels_path}: {len(labels)} labels for {len(self.images)} images")
        count = int(labels.max()) + 1 if len(labels) else 0
        classes = classes or _classes_file(images_path.parent) or [str(c) for c in range(count)]
        if count > len(classes):
            raise InputError(f"{labels_path}: label {count - 1} but only {len(classes)} class names")
        names = [f"{images_path.name}[{i}]" for i in range(len(labels))]
        super().__init__(root=images_path, names=names, labels=labels, classes=classes)

    def decode(self, i: int, min_side: int = 0, *, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
        return self.images[i][:, :, None]


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _classes_file(folder: Path) -> list[str] | None:
    path = folder / "classes.txt"
    return read_class_names(path) if path.is_file() else None


def read_class_names(path: Path) -> list[str]:
    """A classes file: one name a line, in label order. Blank lines at the start and end are
    ignored; one between names would shift every later label, so it is refused, as is a name
    given twice (two labels with one name: predictions that cannot be told apart)."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    first = next((k for k, line in enumerate(lines) if line), len(lines))
    last = max((k for k, line in enumerate(lines) if line), default=-1)
    for k in range(first, last + 1):
        if not lines[k]:
            raise InputError(f"{path}:{k + 1}: an empty class name between names (it would shift every later label)")
    names = lines[first : last + 1]
    check_class_names(names, where=path)
    return names


def check_class_names(names: list[str], *, where: Path | str) -> None:
    """Refuse (naming `where`) a class list with an empty name or a name given twice."""
    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        if not name.strip():
            raise InputError(f"{where}: class {k} has an empty name; each class needs a name")
        if name in seen:
            raise InputError(
                f"{where}: class name {name!r} is given twice (classes {seen[name]} and {k}); each class needs a"
                " name of its own"
            )
        seen[name] = k


def idx_splits(folder: Path) -> dict[str, Path]:
    """The idx image files in a folder, by split name: train and/or test."""
    found = {}
    for split, stem in zip(("train", "test"), IDX_IMAGES, strict=True):
        path = _find(folder, stem)
        if path is not None:
            found[split] = path
    return found


# ---------------------------------------------------------------- class folders


class FolderSource(Source):
    """root/<class>/.../<image>: classes are the sorted folder names (the ImageFolder order).
    A class folder without a file is refused (a class no image can teach; torchvision's
    ImageFolder refuses it too) unless allow_empty, or the classes are given."""

    def __init__(self, root: Path, classes: list[str] | None, *, allow_empty: bool = False) -> None:
        dirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if classes is not None:
            unknown = sorted(set(dirs) - set(classes))
            if unknown:
                raise InputError(f"{root}: class folders not among the given classes: {', '.join(unknown[:5])}")
        by_folder = classes is None  # the folders are the classes: an empty one would be a class of its own
        classes = classes or dirs
        index = {name: i for i, name in enumerate(classes)}
        names, labels = [], []
        for name in dirs:
            found = _walk(root / name)
            if not found and by_folder and not allow_empty:
                raise InputError(f"{root / name}: an empty class folder (no files): it would be a class without"
                                 " images; remove it, or pass --allow-empty-classes to keep it")  # fmt: skip
            for path in found:
                names.append(os.path.relpath(path, root))
                labels.append(index[name])
        super().__init__(root=root, names=names, labels=np.array(labels, dtype=np.int64), classes=classes)

    def decode(self, i: int, min_side: int = 0, *, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
        return decode_file(self.root / self.names[i], min_side, max_bytes=max_bytes)


class ListSource(Source):
    """Files of a folder with labels given by a list (a flat ILSVRC val/ and its label file)."""

    def decode(self, i: int, min_side: int = 0, *, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
        return decode_file(self.root / self.names[i], min_side, max_bytes=max_bytes)


def _walk(folder: Path) -> list[str]:
    """Every non-hidden file under folder, sorted, without following symlinked folders.
    A folder named like an image (x.JPEG/) is listed as an item, to be rejected as such."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        found.extend(os.path.join(dirpath, d) for d in dirnames if looks_like_image(d) and not d.startswith("."))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not looks_like_image(d))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
    return sorted(found)


def list_folder(folder: Path) -> list[str]:
    """The non-hidden entries directly in a folder (files, and folders named like images)."""
    names = []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:  # a symlink loop and the like: listed, rejected when read
            is_dir = False
        if not is_dir or looks_like_image(entry.name):
            names.append(entry.name)
    return sorted(names)
