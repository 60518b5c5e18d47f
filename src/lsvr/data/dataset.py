"""The prepared-dataset format (docs/DATA_FORMAT.md): open, read batches, verify, describe.

Plain numpy files that anyone can read without lsvr; images.npy is opened with
mmap_mode="r" so every thread and process shares the page cache. A set of varying image
shapes (prepare --resize short, format version 2) has `shape` (0, 0, C), each image's
(height, width) in shapes.npy, and no mean image; it is read image by image (`image`, `sizes`).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from pathlib import Path

import numpy as np
import simplejpeg

from lsvr.errors import InputError

FIXED_VERSION = 1  # every image size x size
VARIABLE_VERSION = 2  # images of varying shape (shapes.npy): a reader of version 1 refuses it
READ_VERSIONS = (FIXED_VERSION, VARIABLE_VERSION)
REQUIRED = ("format_version", "num_images", "classes", "image_shape", "encoding", "checksums")


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _image_shape(meta: dict) -> bool:
    """[H, W, C] with H, W > 0, or [0, 0, C] for images of varying shape; C 1 or 3."""
    shape = meta["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_count(x) for x in shape) and shape[2] in (1, 3)):
        return False
    return (shape[0] > 0 and shape[1] > 0) or shape[0] == shape[1] == 0


def _numbers(meta: dict, key: str, *, positive: bool = False) -> bool:
    """channel_mean / channel_std: one finite number per channel, each > 0 when `positive` (a std
    divides every pixel: 0 made the loss 5.4); sets older than the field lack it."""
    value = meta.get(key)
    if value is None:
        return key not in meta
    return isinstance(value, list) and len(value) == meta["image_shape"][2] and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in value)  # fmt: skip


class RecordError(InputError):
    """A prepared record that does not decode: names the dataset and the row."""

    def __init__(self, path: Path, row: int, reason: str) -> None:
        super().__init__(f"{path}: row {row} does not decode ({reason}); `lsvr info --verify {path}` checks the"
                         " files, data.bad_records=skip trains past such rows")  # fmt: skip
        self.row = row


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


class PreparedDataset:
    """A prepared split: `len(ds)`, `ds.labels`, `ds.classes`, `ds.sizes(rows)`, `ds.image(i)`,
    and for fixed-shape sets `ds.read(indices)`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            what = "no such folder" if not self.path.exists() else "no meta.json (not a prepared dataset)"
            raise InputError(f"{self.path}: {what}; make one with `lsvr prepare`")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{meta_path}: not valid JSON ({exc})") from None
        self._check_meta(meta_path)
        self.classes: list[str] = list(self.meta["classes"])
        self.shape: tuple[int, int, int] = tuple(self.meta["image_shape"])  # (H, W, C)
        self.encoding: str = self.meta["encoding"]
        self.labels = self._load("labels.npy", dtype=np.integer).astype(np.int64)  # float labels were truncated
        self.variable = self.shape[0] == 0  # images of varying shape: sizes in shapes.npy
        # (H, W, C), 0..255; None for a set of varying shapes, where a per-pixel mean has no meaning
        self.mean_image = None if self.variable else self._load("mean.npy", dtype=np.floating).astype(np.float32)
        if self.encoding == "raw":
            # (N, H, W, C) uint8; a plain view: np.memmap's per-index overhead is 15% of a crop's copy
            self.images = self._load("images.npy", mmap=True, dtype=np.uint8).view(np.ndarray)
            found = self.images.shape
        else:
            self.offsets = self._load("offsets.npy", dtype=np.integer)
            blob = self.path / "images.bin"
            size = blob.stat().st_size if blob.is_file() else -1
            if self.offsets.ndim != 1 or not len(self.offsets) or size != int(self.offsets[-1]) or size <= 0:
                last = int(self.offsets[-1]) if self.offsets.ndim == 1 and len(self.offsets) else "nothing"
                what = "missing" if size < 0 else f"{size} bytes, offsets.npy says {last}"
                raise InputError(f"{blob}: {what} (truncated or altered: prepare it again)")
            self.blob = np.memmap(blob, dtype=np.uint8, mode="r").view(np.ndarray)
            found = (len(self.offsets) - 1, *self.shape)
        self._check_counts(found)
        if self.variable:
            self.shapes = self._load_shapes()  # (N, 2) int64: each image's stored height, width
        elif self.mean_image.shape != self.shape:
            raise InputError(f"{self.path / 'mean.npy'}: shape {self.mean_image.shape}, meta.json says {self.shape}")
        self._check_labels()
        self._colorspace = "GRAY" if self.shape[2] == 1 else "RGB"
        self._scratch = threading.local()  # a decode buffer per reading thread

    def _check_counts(self, found: tuple[int, ...]) -> None:
        """The image file and labels.npy hold as many rows as meta.json counts; the error names
        the file that disagrees and both counts (found: (N, H, W, C) of the image file)."""
        images = "images.npy" if self.encoding == "raw" else "offsets.npy"
        if found[1:] != self.shape:
            raise InputError(f"{self.path / images}: images of {found[1:]}, meta.json says {self.shape}")
        if found[0] != len(self):
            raise InputError(f"{self.path / images}: {found[0]} images, meta.json says {len(self)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self):
            count = f"{len(self.labels)} labels" if self.labels.ndim == 1 else f"labels of shape {self.labels.shape}"
            raise InputError(f"{self.path / 'labels.npy'}: {count}, {images} and meta.json count {len(self)} images")

    def _load(self, name: str, mmap: bool = False, dtype: type | None = None) -> np.ndarray:
        """A .npy file of the set; of `dtype` (or a kind of it: np.integer) when given."""
        try:
            array = np.load(self.path / name, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{self.path / name}: missing") from None
        except (ValueError, EOFError, OSError) as exc:
            # an empty file is an EOFError, a broken header a ValueError: neither says which file
            reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{self.path / name}: unreadable ({reason}); prepare the set again") from None
        if dtype is not None and not np.issubdtype(array.dtype, dtype):
            want = {np.integer: "whole numbers", np.floating: "floats", np.uint8: "uint8"}[dtype]
            raise InputError(f"{self.path / name}: {array.dtype} values, expected {want} (altered: prepare the set"
                             " again)")  # fmt: skip
        if dtype is np.floating and not np.isfinite(array).all():
            raise InputError(f"{self.path / name}: holds nan or inf (altered: prepare the set again)")
        return array

    def _check_meta(self, meta_path: Path) -> None:
        """Every field of meta.json the reader relies on, of the right type, or an InputError naming it."""
        if not isinstance(self.meta, dict):
            raise InputError(f"{meta_path}: not a JSON object")
        missing = [k for k in REQUIRED if k not in self.meta]
        if missing:
            raise InputError(f"{meta_path}: missing keys {', '.join(missing)}")
        if self.meta["format_version"] not in READ_VERSIONS:
            raise InputError(f"{meta_path}: format version {self.meta['format_version']}, lsvr reads"
                             f" {' and '.join(map(str, READ_VERSIONS))}")  # fmt: skip
        m = self.meta
        # in order, each check only after the ones it relies on (channel stats need image_shape)
        checks = (
            ("num_images", lambda: _count(m["num_images"]), "a whole number >= 0"),
            ("classes", lambda: isinstance(m["classes"], list) and len(m["classes"]) > 0
             and all(isinstance(c, str) for c in m["classes"]), "a non-empty list of names"),
            ("image_shape", lambda: _image_shape(m), "[height, width, 1 or 3] ([0, 0, C]: shapes vary)"),
            ("encoding", lambda: m["encoding"] in ("raw", "jpeg"), "raw or jpeg"),
            ("checksums", lambda: isinstance(m["checksums"], dict), "a mapping of file names to sha256"),
            ("channel_mean", lambda: _numbers(m, "channel_mean"), "one finite number per channel"),
            ("channel_std", lambda: _numbers(m, "channel_std", positive=True), "one finite number > 0 per channel"),
        )  # fmt: skip
        if m.get("image_shape") and isinstance(m["image_shape"], list) and m["image_shape"][:1] == [0]:
            checks += (  # images of varying shape: what prepare --resize short writes, and only that
                ("format_version", lambda: m["format_version"] == VARIABLE_VERSION,
                 f"{VARIABLE_VERSION} (shapes vary)"),
                ("resize", lambda: m.get("resize") == "short", "short (image_shape [0, 0, C])"),
                ("encoding", lambda: m["encoding"] == "jpeg", "jpeg (image_shape [0, 0, C])"),
                ("size", lambda: _count(m.get("size")) and m["size"] > 0, "the shorter side, a whole number > 0"),
                ("max_size", lambda: m.get("max_size") is None
                 or (_count(m["max_size"]) and m["max_size"] >= m["size"]), "null or a whole number >= size"),
            )  # fmt: skip
        for key, ok, want in checks:
            if not ok():
                raise InputError(f"{meta_path}: {key} must be {want}, got {json.dumps(m.get(key))[:60]}")

    def _load_shapes(self) -> np.ndarray:
        """shapes.npy: (N, 2) whole numbers > 0, each shorter side the set's size unless the
        longer side was capped at max_size (then the shorter side is at most size)."""
        where = self.path / "shapes.npy"
        shapes = self._load("shapes.npy")
        if shapes.shape != (len(self), 2) or not np.issubdtype(shapes.dtype, np.integer):
            raise InputError(f"{where}: {shapes.dtype} of shape {shapes.shape}, expected ({len(self)}, 2) whole"
                             f" numbers (height, width): meta.json counts {len(self)} images")  # fmt: skip
        shapes = shapes.astype(np.int64)
        size, cap = self.meta["size"], self.meta.get("max_size")
        short, long = shapes.min(axis=1), shapes.max(axis=1)
        fits = (short > 0) & (((short == size) & (long <= (cap or long))) | ((long == cap) & (short <= size)))
        if not fits.all():
            row = int(np.flatnonzero(~fits)[0])
            policy = f"shorter side {size}" + (f", or longer side {cap} and shorter side at most {size}" if cap else "")
            raise InputError(f"{where}: row {row} is {shapes[row, 0]} x {shapes[row, 1]}, not {policy}"
                             " (altered: prepare the set again)")  # fmt: skip
        return shapes

    def _check_labels(self) -> None:
        """Labels outside [0, classes) would pass training steps and fail only at validation."""
        labels = self.labels
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            bad = int(np.flatnonzero((labels < 0) | (labels >= len(self.classes)))[0])
            raise InputError(f"{self.path / 'labels.npy'}: label {int(labels[bad])} at row {bad} is outside"
                             f" 0..{len(self.classes) - 1} ({len(self.classes)} classes in meta.json)")  # fmt: skip

    def __len__(self) -> int:
        return int(self.meta["num_images"])

    @property
    def channel_mean(self) -> list[float]:
        return list(self.meta["channel_mean"])

    @property
    def channel_std(self) -> list[float]:
        return list(self.meta["channel_std"])

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images at indices as (B, H, W, C) uint8, written into `out` when given."""
        self._fixed_only("read")
        if out is None:
            out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        if self.encoding == "raw":
            np.take(self.images, indices, axis=0, out=out)
        else:
            for j, i in enumerate(indices):
                self._decode(i, out[j])
        return out

    def _decode(self, i: int, out: np.ndarray) -> np.ndarray:
        """Image i decoded by libjpeg-turbo straight into `out` (C-contiguous, H x W x C)."""
        data = self.blob[self.offsets[i] : self.offsets[i + 1]]
        try:
            return simplejpeg.decode_jpeg(data, colorspace=self._colorspace, buffer=out)
        except (ValueError, RuntimeError) as exc:  # libjpeg's message names neither file nor row
            reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecordError(self.path, int(i), reason) from None

    def sizes(self, indices: np.ndarray) -> np.ndarray:
        """The stored (height, width) of the images at indices, as (B, 2) int64."""
        if self.variable:
            return self.shapes[np.asarray(indices, np.int64)]
        return np.broadcast_to(np.asarray(self.shape[:2], np.int64), (len(indices), 2))

    def image(self, i: int, *, scale: int = 1) -> np.ndarray:
        """Image i as (h, w, C) uint8. Raw: a view of the memory map. JPEG: decoded by
        libjpeg-turbo at 1/scale of its stored size (scale 1, 2, 4 or 8: the decoder's own
        reduced-size decode, far cheaper than decoding whole and shrinking), a fresh array
        of ceil(H/scale) x ceil(W/scale)."""
        if self.encoding == "raw":
            return self.images[i]
        height, width = (int(v) for v in self.sizes(np.array([i]))[0])
        data = self.blob[self.offsets[i] : self.offsets[i + 1]]
        try:
            pixels = simplejpeg.decode_jpeg(data, colorspace=self._colorspace,
                                            min_height=-(-height // scale), min_width=-(-width // scale))  # fmt: skip
        except (ValueError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecordError(self.path, int(i), reason) from None
        return pixels if pixels.ndim == 3 else pixels[:, :, None]

    def encoded(self, indices: np.ndarray) -> list:
        """The compressed bytes of the (JPEG) images at indices: 1-D uint8 torch tensors,
        views of one copy out of the memory map (for data.decode=device)."""
        import torch  # here alone: reading and describing a set needs no torch

        indices = np.asarray(indices)
        parts = [self.blob[self.offsets[i] : self.offsets[i + 1]] for i in indices.tolist()]
        return list(torch.from_numpy(np.concatenate(parts)).split([len(part) for part in parts]))

    def read_crops(self, indices: np.ndarray, top: np.ndarray, left: np.ndarray, crop: int,
                   out: np.ndarray) -> np.ndarray:  # fmt: skip
        """The crop x crop windows at (top, left) of the images at indices, into out
        (B, crop, crop, C). Raw: copied from the memory map, never the whole image; JPEG:
        decoded into a per-thread buffer, then cut."""
        self._fixed_only("read_crops")
        indices = np.asarray(indices)
        tops, lefts = np.asarray(top).tolist(), np.asarray(left).tolist()
        if self.encoding == "raw":
            for j, (i, t, lft) in enumerate(zip(indices.tolist(), tops, lefts, strict=True)):
                out[j] = self.images[i, t : t + crop, lft : lft + crop]
            return out
        image = getattr(self._scratch, "buffer", None)
        if image is None:
            image = self._scratch.buffer = np.empty(self.shape, np.uint8)
        for j, (i, t, lft) in enumerate(zip(indices.tolist(), tops, lefts, strict=True)):
            out[j] = self._decode(i, image)[t : t + crop, lft : lft + crop]
        return out

    def _fixed_only(self, what: str) -> None:
        """The batch readers copy into (B, H, W, C): images of varying shape do not fit one."""
        if self.variable:
            raise InputError(f"{self.path}: images of varying shape (prepare --resize short); {what} reads sets of"
                             " one image shape only: read each with image(i), its size from sizes(rows)")  # fmt: skip

    def _check_jpeg_shapes(self) -> list[str]:
        """Each JPEG's header against shapes.npy: the first row that disagrees, or none."""
        for i in range(len(self)):
            try:
                height, width, _, _ = simplejpeg.decode_jpeg_header(self.blob[self.offsets[i] : self.offsets[i + 1]])
            except ValueError as exc:
                return [f"{self.path / 'images.bin'}: row {i} has no readable JPEG header ({exc})"]
            if (height, width) != tuple(self.shapes[i].tolist()):
                return [f"{self.path / 'shapes.npy'}: row {i} says {self.shapes[i, 0]} x {self.shapes[i, 1]}, its JPEG"
                        f" is {height} x {width}"]  # fmt: skip
        return []

    def verify(self) -> list[str]:
        """Problems found by re-hashing every file against meta.json (and, for a set of varying
        shapes, reading each JPEG's size against shapes.npy); empty when all is well."""
        problems = self._check_classes() + (self._check_jpeg_shapes() if self.variable else [])
        for name, expected in self.meta["checksums"].items():
            path = self.path / name
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            if file_sha256(path) != expected:
                problems.append(f"{path}: checksum mismatch")
        return problems

    def _check_classes(self) -> list[str]:
        """meta.json's class names: unique and non-empty (the labels' range is checked at open)."""
        where = self.path / "meta.json"
        problems = []
        seen: set[str] = set()
        repeated = [c for c in self.classes if c in seen or seen.add(c)]
        if repeated:
            problems.append(f"{where}: classes names {', '.join(map(repr, repeated[:3]))} more than once")
        blank = [i for i, c in enumerate(self.classes) if not c.strip()]
        if blank:
            problems.append(f"{where}: classes has an empty name at index {blank[0]}")
        return problems

    def size_policy(self) -> dict:
        """A set of varying shapes: its sizes policy and the range of heights and widths stored."""
        heights, widths = self.shapes.T if len(self) else (np.zeros(1, np.int64),) * 2
        return {
            "shorter_side": self.meta["size"],
            "max_size": self.meta.get("max_size"),
            "heights": [int(heights.min()), int(heights.max())],
            "widths": [int(widths.min()), int(widths.max())],
        }

    def describe(self) -> dict:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {
            "path": str(self.path),
            "images": len(self),
            "rejected": self.meta.get("num_rejected", 0),
            "rejected_by_kind": self.meta.get("rejected_by_kind", {}),
            "classes": len(self.classes),
            "image_shape": list(self.shape),
            "encoding": self.encoding,
            "resize": self.meta.get("resize"),
            **({"sizes": self.size_policy()} if self.variable else {}),
            "channel_mean": self.channel_mean,
            "channel_std": self.channel_std,
            "images_per_class": {"min": int(counts.min()), "max": int(counts.max())},
            "source": self.meta.get("source"),
            "created": self.meta.get("created"),
        }
