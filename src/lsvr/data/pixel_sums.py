"""Prepare's pixel statistics, kept in integers so they do not depend on how the work was split:
per-pixel sums for the mean image (fixed-shape sets), per-channel sums for a set of varying
shapes, and per-channel moments of a sample of pixels for the std."""

from __future__ import annotations

import threading

import numpy as np


class ShardSums:
    """Integer pixel sums per shard, each worker thread adding into arrays of its own (no
    locks, no races; integer sums do not depend on which thread added what). The running
    sums are uint16, half the memory traffic of uint32, folded into uint64 every 257 images
    (257 * 255 is the most uint16 holds)."""

    FOLD = 257

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self.parts: dict[tuple[int, int], list] = {}  # (shard, thread) -> [uint16 sums, count, uint64 sums]

    def _part(self, shard: int) -> list:
        key = (shard, threading.get_ident())
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = [np.zeros(self.shape, np.uint16), 0, np.zeros(self.shape, np.uint64)]
        return part

    def add_total(self, shard: int, sums: np.ndarray) -> None:
        """Add an image's (C,) uint64 per-channel sums to a (1, 1, C) total (images of varying shape)."""
        part = self._part(shard)
        part[2] += sums

    def add(self, shard: int, pixels: np.ndarray) -> None:
        part = self._part(shard)
        np.add(part[0], pixels, out=part[0])
        part[1] += 1
        if part[1] == self.FOLD:
            part[2] += part[0]
            part[0][:] = 0
            part[1] = 0

    def pop(self, shard: int) -> np.ndarray:
        total = np.zeros(self.shape, np.uint64)
        for key in [k for k in list(self.parts) if k[0] == shard]:
            running, _, folded = self.parts.pop(key)
            total += folded
            total += running
        return total


def moment_sums(pixels: np.ndarray, *, squares: bool = True) -> np.ndarray:
    """Per-channel sums and sums of squares (zeros without `squares`) of an (H, W, C) uint8
    image, exact, as (2, C) uint64, in about a sixth of an einsum's time: 255**2 fits uint16,
    and H * 255**2 fits uint32 for H < 66,051 (JPEG's sides stop at 65,535)."""
    h, w, c = pixels.shape
    firsts = pixels.reshape(h, w * c).sum(axis=0, dtype=np.uint32).reshape(w, c).sum(axis=0, dtype=np.uint64)
    if not squares:
        return np.stack([firsts, np.zeros_like(firsts)])
    columns = np.square(pixels, dtype=np.uint16).reshape(h, w * c).sum(axis=0, dtype=np.uint32)
    return np.stack([firsts, columns.reshape(w, c).sum(axis=0, dtype=np.uint64)])
