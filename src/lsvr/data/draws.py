"""Each batch's random draws, made once: every sample's crop window and mirror flag.

Each sample gets a 63-bit key hashed from (seed, epoch, position in the epoch's order), and
its draws come from the key alone: any rank at any world size, and a run resumed at any
step, replays the same augmentation without saved generator state. The loader makes the
draws once per batch in its reading threads; they travel on the Batch, the reader cuts the
windows, and Augment mirrors where they say (and subtracts the mean image's same window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mix (SplitMix64's finaliser), vectorised; uint64 arithmetic wraps."""
    x = (x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)) & _MASK
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_keys(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """Per-sample random keys in [0, 2**63), from (seed, epoch, position in the epoch order)."""
    base = splitmix64(splitmix64(np.array([seed], np.uint64)) ^ np.uint64(epoch))
    return (splitmix64(base ^ positions.astype(np.uint64)) >> np.uint64(1)).astype(np.int64)


@dataclass(frozen=True)
class Draws:
    """The crop x crop window at (top, left) of each image of a batch, and whether to mirror it."""

    top: torch.Tensor  # (B,) int64, 0..H-crop
    left: torch.Tensor  # (B,) int64, 0..W-crop
    mirror: torch.Tensor  # (B,) bool: mirror the window left-right
    crop: int

    @classmethod
    def from_keys(cls, keys: np.ndarray, *, size: int, crop: int, flip: bool = True) -> Draws:
        """Random windows (offsets 0..size-crop) and mirrors (p=0.5; never unless flip), one
        per key: the offsets from the key's low bits, the mirror from bit 32."""
        span = size - crop + 1
        mirror = ((keys // 2**32) % 2 == 1) & flip
        return cls(torch.from_numpy(keys % span), torch.from_numpy((keys // 65536) % span),
                   torch.from_numpy(np.asarray(mirror)), crop)  # fmt: skip

    @classmethod
    def fixed(cls, count: int, *, top: int, left: int, mirror: bool, crop: int, device: torch.device) -> Draws:
        """The same window for all `count` images (evaluation's centre and corner views)."""
        top_ = torch.full((count,), top, dtype=torch.int64, device=device)
        return cls(top_, torch.full_like(top_, left), torch.full_like(top_, mirror, dtype=torch.bool), crop)

    def __len__(self) -> int:
        return len(self.top)

    def select(self, keep: np.ndarray) -> Draws:
        """The draws of the samples where `keep` is True (a batch without its bad rows)."""
        where = torch.from_numpy(keep)
        return Draws(self.top[where], self.left[where], self.mirror[where], self.crop)

    def to(self, device: torch.device, *, non_blocking: bool = False) -> Draws:
        return Draws(*(t.to(device, non_blocking=non_blocking) for t in self.tensors()), self.crop)

    def pin_memory(self) -> Draws:
        return Draws(*(t.pin_memory() for t in self.tensors()), self.crop)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.top, self.left, self.mirror

    def cut(self, images: torch.Tensor) -> torch.Tensor:
        """The windows of (B, H, W, C) images as (B, crop, crop, C), in one gather (not mirrored)."""
        span = torch.arange(self.crop, device=images.device)
        rows, cols = (self.top[:, None] + span)[:, :, None], (self.left[:, None] + span)[:, None, :]
        return images[torch.arange(len(images), device=images.device)[:, None, None], rows, cols]
