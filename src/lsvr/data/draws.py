"""Each batch's random draws, made once: every sample's window and mirror flag.

Each sample gets a 63-bit key hashed from (seed, epoch, position in the epoch's order), and
its draws come from the key alone: any rank at any world size, and a run resumed at any
step, replays the same augmentation without saved generator state. The loader makes the
draws once per batch in its reading threads; they travel on the Batch, the reader cuts the
windows (and resizes those that are not crop x crop), and Augment mirrors where they say
(and subtracts the mean image's same window). Three kinds of window: the paper's random
crop (from_keys), torchvision's RandomResizedCrop (random_resized) and evaluation's
Resize + CenterCrop (centred).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mix (SplitMix64's finaliser), vectorised; uint64 arithmetic wraps."""
    x = (x.astype(np.uint64) + _GAMMA) & _MASK
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_keys(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """Per-sample random keys in [0, 2**63), from (seed, epoch, position in the epoch order)."""
    base = splitmix64(splitmix64(np.array([seed], np.uint64)) ^ np.uint64(epoch))
    return (splitmix64(base ^ positions.astype(np.uint64)) >> np.uint64(1)).astype(np.int64)


@dataclass(frozen=True)
class Draws:
    """Each image's window of a batch: `height` x `width` stored pixels at (top, left), brought
    to `crop` x `crop` (cut as it is where the window is crop x crop, else resized), and
    whether to mirror it."""

    top: torch.Tensor  # (B,) int64, 0..H-height
    left: torch.Tensor  # (B,) int64, 0..W-width
    mirror: torch.Tensor  # (B,) bool: mirror the window left-right
    crop: int  # the output side
    height: torch.Tensor | None = None  # (B,) int64 window extents in stored pixels; None: crop x crop
    width: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.height is None:  # frozen: set through object's own setattr
            object.__setattr__(self, "height", torch.full_like(self.top, self.crop))
            object.__setattr__(self, "width", torch.full_like(self.top, self.crop))

    @classmethod
    def from_keys(cls, keys: np.ndarray, *, size: int | np.ndarray, crop: int, flip: bool = True) -> Draws:
        """The paper's random crop x crop windows and mirrors (p=0.5; never unless flip), one per
        key: the offsets from the key's low bits, the mirror from bit 32. size: the stored side
        of a fixed-shape set, or (B, 2) per-sample (height, width); an image shorter than crop
        gets the largest square window it holds (the reader upscales it)."""
        sizes = _sizes(size, len(keys))
        side = np.minimum(crop, sizes.min(axis=1))  # (B,) == crop unless the image is smaller
        span_h, span_w = sizes[:, 0] - side + 1, sizes[:, 1] - side + 1
        mirror = ((keys // 2**32) % 2 == 1) & flip
        side_ = torch.from_numpy(side)
        return cls(torch.from_numpy(keys % span_h), torch.from_numpy((keys // 65536) % span_w),
                   torch.from_numpy(np.asarray(mirror)), crop, side_, side_.clone())  # fmt: skip

    @classmethod
    def random_resized(cls, keys: np.ndarray, sizes: np.ndarray, *, crop: int, scale: tuple[float, float] = (0.08, 1.0),
                       ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> Draws:  # fmt: skip
        """torchvision's RandomResizedCrop windows, one per key (sizes: (B, 2) stored (height, width)):
        up to 10 tries of an area fraction in `scale` and a log-uniform aspect ratio in `ratio`,
        the first that fits taken, else the whole image cut to the nearest ratio in bounds and
        centred. Every uniform comes from the key (splitmix64 of key and draw number), so the
        windows need no generator state; the mirror is bit 32 of the key, as from_keys'."""
        sizes = _sizes(sizes, len(keys))
        height, width = sizes[:, :1].astype(np.float64), sizes[:, 1:].astype(np.float64)  # (B, 1)
        u = _uniforms(keys, TRIES * 4).reshape(len(keys), TRIES, 4)  # (B, tries, 4)
        area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
        low, high = np.log(ratio[0]), np.log(ratio[1])
        aspect = np.exp(low + (high - low) * u[..., 1])
        # rint rounds half to even, as Python's round() in torchvision
        w, h = np.rint(np.sqrt(area * aspect)), np.rint(np.sqrt(area / aspect))  # (B, tries)
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.argmax(axis=1)  # the first try that fits (0 where none does)
        pick = np.arange(len(keys)), first
        h, w = h[pick], w[pick]
        top = np.floor(u[pick][:, 2] * (height[:, 0] - h + 1))
        left = np.floor(u[pick][:, 3] * (width[:, 0] - w + 1))
        fallback = ~fits.any(axis=1)
        if fallback.any():
            fh, fw = _fallback(height[fallback, 0], width[fallback, 0], ratio)
            h[fallback], w[fallback] = fh, fw
            top[fallback] = (height[fallback, 0] - fh) // 2
            left[fallback] = (width[fallback, 0] - fw) // 2
        mirror = ((keys // 2**32) % 2 == 1) & flip
        t = [torch.from_numpy(v.astype(np.int64)) for v in (top, left, h, w)]
        return cls(t[0], t[1], torch.from_numpy(np.asarray(mirror)), crop, t[2], t[3])

    @classmethod
    def centred(cls, sizes: np.ndarray, *, resize: int, crop: int) -> Draws:
        """Evaluation's window as torchvision's Resize(resize) then CenterCrop(crop): the shorter
        side brought to `resize` (the longer to int(resize * long / short)), the crop x crop centre
        of that (offset round((side - crop) / 2)), all mapped back to stored pixels and rounded,
        at most the image. A stored 256 x 256 image with resize 256, crop 224: the 224 window at
        16, no resize."""
        sizes = _sizes(sizes, len(sizes))
        short = sizes.min(axis=1, keepdims=True)  # (B, 1)
        resized = np.where(sizes == short, resize, resize * sizes // short)  # (B, 2) after Resize
        scale = sizes / resized  # stored pixels per resized pixel, (B, 2)
        extent = np.clip(np.rint(crop * scale), 1, sizes).astype(np.int64)
        offset = np.rint(np.rint((resized - crop) / 2) * scale).astype(np.int64)
        offset = np.clip(offset, 0, sizes - extent)
        t = [
            torch.from_numpy(np.ascontiguousarray(v)) for v in (offset[:, 0], offset[:, 1], extent[:, 0], extent[:, 1])
        ]
        return cls(t[0], t[1], torch.zeros(len(sizes), dtype=torch.bool), crop, t[2], t[3])

    @classmethod
    def fixed(cls, count: int, *, top: int, left: int, mirror: bool, crop: int, device: torch.device) -> Draws:
        """The same window for all `count` images (evaluation's centre and corner views)."""
        top_ = torch.full((count,), top, dtype=torch.int64, device=device)
        return cls(top_, torch.full_like(top_, left), torch.full_like(top_, mirror, dtype=torch.bool), crop)

    def __len__(self) -> int:
        return len(self.top)

    @property
    def resized(self) -> bool:
        """Whether any window is other than crop x crop (the reader must resize, not just cut)."""
        return bool(((self.height != self.crop) | (self.width != self.crop)).any())

    def select(self, keep: np.ndarray) -> Draws:
        """The draws of the samples where `keep` is True (a batch without its bad rows)."""
        where = torch.from_numpy(keep)
        return Draws(*(t[where] for t in self.tensors()[:3]), self.crop, self.height[where], self.width[where])

    def part(self, rows: slice) -> Draws:
        """The draws of a slice of the batch's samples (a split batch's share)."""
        return Draws(*(t[rows] for t in self.tensors()), self.crop, self.height[rows], self.width[rows])

    def to(self, device: torch.device, *, non_blocking: bool = False) -> Draws:
        moved = [t.to(device, non_blocking=non_blocking) for t in (*self.tensors(), self.height, self.width)]
        return Draws(*moved[:3], self.crop, *moved[3:])

    def pin_memory(self) -> Draws:
        pinned = [t.pin_memory() for t in (*self.tensors(), self.height, self.width)]
        return Draws(*pinned[:3], self.crop, *pinned[3:])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.top, self.left, self.mirror

    def cut(self, images: torch.Tensor) -> torch.Tensor:
        """The crop x crop windows of (B, H, W, C) images as (B, crop, crop, C), in one gather (not mirrored)."""
        span = torch.arange(self.crop, device=images.device)
        rows, cols = (self.top[:, None] + span)[:, :, None], (self.left[:, None] + span)[:, None, :]
        return images[torch.arange(len(images), device=images.device)[:, None, None], rows, cols]


TRIES = 10  # torchvision's RandomResizedCrop tries this many windows before its fallback


def _sizes(size: int | np.ndarray, count: int) -> np.ndarray:
    """(count, 2) int64 (height, width) from one side or per-sample sizes."""
    if np.ndim(size) == 0:
        return np.full((count, 2), int(size), np.int64)
    return np.asarray(size, np.int64).reshape(count, 2)


def _uniforms(keys: np.ndarray, count: int) -> np.ndarray:
    """(B, count) float64 uniforms in [0, 1): the first `count` outputs of the SplitMix64
    generator seeded with each key (state key + j * gamma, mixed; splitmix64 adds the last
    gamma), a pure function of the key, so any rank and any resumed run draws the same."""
    steps = np.arange(count, dtype=np.uint64) * _GAMMA  # uint64 arrays wrap silently
    state = keys.astype(np.uint64)[:, None] + steps[None, :]  # (B, count)
    return (splitmix64(state) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _fallback(height: np.ndarray, width: np.ndarray, ratio: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's window when no try fits: the whole image, cut to the nearest ratio in bounds."""
    aspect = width / height
    h, w = height.copy(), width.copy()
    narrow, wide = aspect < min(ratio), aspect > max(ratio)
    h[narrow] = np.rint(width[narrow] / min(ratio))
    w[wide] = np.rint(height[wide] * max(ratio))
    return h, w
