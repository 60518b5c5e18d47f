"""Readers of raw inputs: idx files (MNIST / Fashion-MNIST) and class-folder trees of images.

A source lists its items (name, label) and decodes item i into an (H, W, C) uint8 array,
raising DecodeError with a reason for anything that cannot become an image.
Decoding policy: JPEGs go through libjpeg-turbo (simplejpeg), everything else and the
JPEGs it refuses (CMYK, a PNG named .JPEG) through Pillow. EXIF orientation is NOT applied,
as in the ImageNet tools: the stored pixels are used as they are.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from lsvr.errors import InputError

MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit; above it an image is refused
# Pillow warns on opening an image above that limit (and raises above twice it); lsvr checks the
# size itself and rejects the file with one line, so the warning would only repeat it as noise.
# A filter for the whole process, not catch_warnings: prepare decodes in threads, and
# catch_warnings swaps the global filter list, which threads would race on.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
IDX_IMAGES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")


IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
SCALES = (8, 4, 2)  # libjpeg-turbo's reduced-size decodes that pay (3/4 and the like do not)


class DecodeError(Exception):
    """An input that cannot become an image: `kind` (a short class of failure, counted in
    the summary) and the message (the reason written to rejects.tsv)."""

    def __init__(self, reason: str, kind: str = "undecodable") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class Source(ABC):
    """A split of raw inputs: `names[i]`, `labels[i]`, `classes`, and `decode(i)`."""

    root: Path
    names: list[str]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @abstractmethod
    def decode(self, i: int, min_side: int = 0) -> np.ndarray:  # -> (H, W, C) uint8, C in {1, 3}
        """Item i as pixels, or DecodeError with the reason. A JPEG may be decoded at a
        reduced scale (1/2, 1/4, 1/8) as long as its shorter side stays >= min_side."""


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

    def decode(self, i: int, min_side: int = 0) -> np.ndarray:
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
    """root/<class>/.../<image>: classes are the sorted folder names (the ImageFolder order)."""

    def __init__(self, root: Path, classes: list[str] | None) -> None:
        dirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if classes is not None:
            unknown = sorted(set(dirs) - set(classes))
            if unknown:
                raise InputError(f"{root}: class folders not among the given classes: {', '.join(unknown[:5])}")
        classes = classes or dirs
        index = {name: i for i, name in enumerate(classes)}
        names, labels = [], []
        for name in dirs:
            for path in _walk(root / name):
                names.append(os.path.relpath(path, root))
                labels.append(index[name])
        super().__init__(root=root, names=names, labels=np.array(labels, dtype=np.int64), classes=classes)

    def decode(self, i: int, min_side: int = 0) -> np.ndarray:
        return decode_file(self.root / self.names[i], min_side)


class ListSource(Source):
    """Files of a folder with labels given by a list (a flat ILSVRC val/ and its label file)."""

    def decode(self, i: int, min_side: int = 0) -> np.ndarray:
        return decode_file(self.root / self.names[i], min_side)


def looks_like_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


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


def decode_file(path: Path, min_side: int = 0) -> np.ndarray:
    """Decode one image file to (H, W, C) uint8, C = 1 for grey and 3 otherwise."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DecodeError("is a directory", "directory") from None
    except OSError as exc:
        raise DecodeError(f"unreadable: {exc.strerror or exc}", "unreadable") from None
    if not data:
        raise DecodeError("empty file", "empty")
    return decode_bytes(data, min_side)


def reduced_scale(width: int, height: int, min_side: int) -> int:
    """The largest libjpeg-turbo scale denominator (8, 4, 2, else 1) keeping the shorter side >= min_side."""
    if min_side <= 0:
        return 1
    short = min(width, height)
    return next((f for f in SCALES if short // f >= min_side), 1)


def decode_bytes(data: bytes, min_side: int = 0) -> np.ndarray:
    if data[:2] == b"\xff\xd8":
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            raise DecodeError(f"bad JPEG header: {exc}", "bad-jpeg") from None
        if width * height > MAX_PIXELS:
            raise DecodeError(f"{width}x{height} pixels is over the {MAX_PIXELS} limit", "too-large")
        scale = reduced_scale(width, height, min_side)
        try:
            grey = colorspace == "Gray"
            pixels = simplejpeg.decode_jpeg(
                data, colorspace="GRAY" if grey else "RGB", min_width=width // scale, min_height=height // scale
            )
            return pixels if pixels.ndim == 3 else pixels[:, :, None]
        except ValueError as exc:
            jpeg_error = str(exc)  # CMYK and some odd JPEGs: Pillow decodes them, else this reason
            try:
                return _decode_pillow(data, min_side)
            except DecodeError:
                raise DecodeError(f"bad JPEG: {jpeg_error}", "bad-jpeg") from None
    return _decode_pillow(data, min_side)


def _decode_pillow(data: bytes, min_side: int = 0) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DecodeError(f"{image.width}x{image.height} pixels is over the {MAX_PIXELS} limit", "too-large")
            scale = reduced_scale(image.width, image.height, min_side)
            if scale > 1 and image.format == "JPEG":  # CMYK JPEGs: Pillow's own reduced-size decode
                image.draft(image.mode, (-(-image.width // scale), -(-image.height // scale)))
            image.load()
            return _to_array(image)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb: {_text(exc)}", "too-large") from None
    except Image.UnidentifiedImageError:  # its message names the BytesIO by address: not reproducible
        raise DecodeError("not a decodable image: no image format recognised", "not-an-image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a decodable image: {_text(exc)}", "not-an-image") from None


def _text(exc: BaseException) -> str:
    """A library's error message without object addresses, so that two identical prepares
    write identical rejects.tsv (docs/DATA_FORMAT.md)."""
    return re.sub(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", r"<\1>", str(exc))


def _to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale, or convert() clips to white
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        return np.clip(wide * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)[:, :, None]
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"))[:, :, None]
    if image.mode in ("LA", "La"):
        return np.asarray(image.convert("L"))[:, :, None]
    return np.asarray(image.convert("RGB"))


def open_source(
    path: Path,
    *,
    split: str | None = None,
    classes: list[str] | None = None,
    labels: Path | None = None,
    devkit_meta: Path | None = None,
) -> Source:
    """The source at path: an idx images file, a folder of idx files (split picks one), class
    folders, or a flat folder of images with a label file (`labels`)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if labels is not None:
        from lsvr.data.labels import labelled_folder  # labels imports this module

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
