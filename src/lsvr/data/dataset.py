"""The prepared-dataset format (docs/DATA_FORMAT.md): open, read batches, verify, describe.

Plain numpy files that anyone can read without lsvr; images.npy is opened with
mmap_mode="r" so every thread and process shares the page cache.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import simplejpeg

from lsvr.errors import InputError

FORMAT_VERSION = 1
REQUIRED = ("format_version", "num_images", "classes", "image_shape", "encoding", "checksums")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


class PreparedDataset:
    """A prepared split: `len(ds)`, `ds.labels`, `ds.classes`, `ds.read(indices)`."""

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
        missing = [k for k in REQUIRED if k not in self.meta]
        if missing:
            raise InputError(f"{meta_path}: missing keys {', '.join(missing)}")
        if self.meta["format_version"] != FORMAT_VERSION:
            raise InputError(f"{meta_path}: format version {self.meta['format_version']}, lsvr reads {FORMAT_VERSION}")
        self.classes: list[str] = list(self.meta["classes"])
        self.shape: tuple[int, int, int] = tuple(self.meta["image_shape"])  # (H, W, C)
        self.encoding: str = self.meta["encoding"]
        self.labels = self._load("labels.npy").astype(np.int64)
        self.mean_image = self._load("mean.npy").astype(np.float32)  # (H, W, C), 0..255
        if self.encoding == "raw":
            # (N, H, W, C) uint8; a plain view: np.memmap's per-index overhead is 15% of a crop's copy
            self.images = self._load("images.npy", mmap=True).view(np.ndarray)
            found = self.images.shape
        else:
            self.offsets = self._load("offsets.npy")
            blob = self.path / "images.bin"
            size = blob.stat().st_size if blob.is_file() else -1
            if size != int(self.offsets[-1]) or size <= 0:
                what = "missing" if size < 0 else f"{size} bytes, offsets.npy says {int(self.offsets[-1])}"
                raise InputError(f"{blob}: {what} (truncated or altered: prepare it again)")
            self.blob = np.memmap(blob, dtype=np.uint8, mode="r").view(np.ndarray)
            found = (len(self.offsets) - 1, *self.shape)
        if found != (len(self), *self.shape) or len(self.labels) != len(self):
            raise InputError(f"{self.path}: files disagree with meta.json ({found} vs {self.meta['num_images']})")
        self._colorspace = "GRAY" if self.shape[2] == 1 else "RGB"
        self._scratch = threading.local()  # a decode buffer per reading thread

    def _load(self, name: str, mmap: bool = False) -> np.ndarray:
        try:
            return np.load(self.path / name, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{self.path / name}: missing") from None
        except ValueError as exc:
            raise InputError(f"{self.path / name}: unreadable ({exc})") from None

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
        return simplejpeg.decode_jpeg(data, colorspace=self._colorspace, buffer=out)

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

    def verify(self) -> list[str]:
        """Problems found by re-hashing every file against meta.json; empty when all is well."""
        problems = []
        for name, expected in self.meta["checksums"].items():
            path = self.path / name
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            if file_sha256(path) != expected:
                problems.append(f"{path}: checksum mismatch")
        return problems

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
            "channel_mean": self.channel_mean,
            "channel_std": self.channel_std,
            "images_per_class": {"min": int(counts.min()), "max": int(counts.max())},
            "source": self.meta.get("source"),
            "created": self.meta.get("created"),
        }
