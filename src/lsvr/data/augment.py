"""Batched augmentation on the training device: crop, mirror, normalise, as tensor ops.

Input is a uint8 batch (B, H, W, C) as the loader delivers it. One gather does the
per-image crop and mirror; the mean image is gathered at the same source positions, which
equals the paper's "subtract the mean image, then crop and mirror". The result is
(B, C, crop, crop) float32; its memory is NHWC, i.e. already channels_last.
"""

from __future__ import annotations

import numpy as np
import torch


def crop_offsets(keys, size: int, crop: int, flip: bool = True):
    """Each sample's random crop (top, left in 0..size-crop) and mirror, drawn from its key.
    Works on numpy arrays (the loader crops on the host) and tensors (here) alike."""
    span = size - crop + 1
    return keys % span, (keys // 65536) % span, ((keys // 2**32) % 2 == 1) & flip


def crop_windows(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, crop: int) -> torch.Tensor:
    """The crop x crop window at (top, left) of each (B, H, W, C) image, in one gather."""
    span = torch.arange(crop, device=images.device)
    rows, cols = (top[:, None] + span)[:, :, None], (left[:, None] + span)[:, None, :]
    return images[torch.arange(len(images), device=images.device)[:, None, None], rows, cols]


def mirror_images(images: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mirror (B, H, W, C) images left-right where `where` is True, in place. On CPU a loop
    of flips (about 10x a uint8 gather or torch.where); on a GPU one batched select."""
    if images.device.type != "cpu":
        return torch.where(where[:, None, None, None], images.flip(2), images)
    for j in torch.nonzero(where).flatten().tolist():
        image = images[j]
        image.copy_(image.flip(1))
    return images


class Augment:
    """normalize: "mean_image" subtracts the dataset's mean image (the paper; pixel scale
    0..255 kept), "channel" subtracts the per-channel mean and divides by the std."""

    def __init__(
        self,
        *,
        mean_image: np.ndarray,
        channel_mean: list[float],
        channel_std: list[float],
        crop: int,
        normalize: str = "mean_image",
        flip: bool = True,
        channels_last: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.size = mean_image.shape[0]
        if crop > self.size or mean_image.shape[1] != self.size:
            raise ValueError(f"crop {crop} does not fit images of {mean_image.shape[:2]}")
        self.crop, self.flip, self.normalize = crop, flip, normalize
        self.channels_last = channels_last
        device = torch.device(device)
        self.mean_image = torch.from_numpy(np.ascontiguousarray(mean_image)).to(device)  # (H, W, C)
        self.mean_mirrored = self.mean_image.flip(1).contiguous()
        self.channel_mean = torch.tensor(channel_mean, dtype=torch.float32, device=device)
        self.channel_inv_std = 1.0 / torch.tensor(channel_std, dtype=torch.float32, device=device).clamp_min(1e-3)
        self.arange = torch.arange(crop, device=device)

    def _gather(self, images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, mirror_: torch.Tensor,
                cropped: bool = False):  # fmt: skip
        """cropped: the loader already cut the images; the mirror and normalisation are left."""
        if cropped and images.device.type == "cpu" and self.normalize == "mean_image":
            return self._finish(self._subtract_mean_cpu(mirror_images(images, mirror_).float(), top, left, mirror_))
        if cropped and self.normalize != "mean_image":  # no source positions needed
            return self._finish((mirror_images(images, mirror_).float() - self.channel_mean) * self.channel_inv_std)
        rows = top[:, None] + self.arange  # (B, crop)
        cols = torch.where(mirror_[:, None], left[:, None] + self.crop - 1 - self.arange, left[:, None] + self.arange)
        if cropped:
            pixels = mirror_images(images, mirror_).float()
        else:
            batch = torch.arange(len(images), device=images.device)[:, None, None]
            pixels = images[batch, rows[:, :, None], cols[:, None, :]].float()  # (B, crop, crop, C)
        if self.normalize == "mean_image":
            pixels = pixels - self.mean_image[rows[:, :, None], cols[:, None, :]]
        else:
            pixels = (pixels - self.channel_mean) * self.channel_inv_std
        return self._finish(pixels)

    def _finish(self, pixels: torch.Tensor) -> torch.Tensor:
        out = pixels.permute(0, 3, 1, 2)  # (B, C, crop, crop), NHWC in memory
        return out if self.channels_last else out.contiguous()

    def _subtract_mean_cpu(self, pixels: torch.Tensor, top, left, mirror_) -> torch.Tensor:
        """The mean image's crop windows, subtracted in place by slices: on CPU a gather of
        (B, crop, crop, C) floats costs more than the rest of the augmentation together."""
        width, crop = self.size, self.crop
        for j, (t, lft, m) in enumerate(zip(top.tolist(), left.tolist(), mirror_.tolist(), strict=True)):
            if m:  # the mirrored crop at left `lft` is the mirrored mean's window at width - lft - crop
                pixels[j] -= self.mean_mirrored[t : t + crop, width - lft - crop : width - lft]
            else:
                pixels[j] -= self.mean_image[t : t + crop, lft : lft + crop]
        return pixels

    def train(self, images: torch.Tensor, keys: torch.Tensor, *, cropped: bool = False) -> torch.Tensor:
        """Random crop (offsets 0..H-crop) and mirror (p=0.5), drawn per image from its key.
        cropped: the loader has cut the crop (Loader(crop=...)), with the same draws."""
        top, left, mirror = crop_offsets(keys, self.size, self.crop, self.flip)
        return self._gather(images, top, left, mirror, cropped)

    def center(self, images: torch.Tensor, *, mirror: bool = False) -> torch.Tensor:
        """The centre crop (offset (H-crop)//2: 14 for 227 of 256, as the paper)."""
        offset = torch.full((len(images),), (self.size - self.crop) // 2, device=images.device)
        return self._gather(images, offset, offset, torch.full_like(offset, mirror, dtype=torch.bool))

    def ten_crops(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The four corners and the centre, each with its mirror: 10 views of the batch."""
        far, mid = self.size - self.crop, (self.size - self.crop) // 2
        views = []
        for top, left in ((0, 0), (0, far), (far, 0), (far, far), (mid, mid)):
            t = torch.full((len(images),), top, device=images.device)
            lft = torch.full_like(t, left)
            for mirror in (False, True):
                views.append(self._gather(images, t, lft, torch.full_like(t, mirror, dtype=torch.bool)))
        return views
