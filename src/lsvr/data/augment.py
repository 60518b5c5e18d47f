"""Batched augmentation on the training device: mirror and normalise, as tensor ops.

Input is a uint8 batch (B, crop, crop, C) already cut at its crop windows, with the Draws
that chose them (data/draws.py): the reader cuts training batches as it reads them, and
`center` / `ten_crops` cut evaluation's fixed windows from whole images. Mean-image
subtraction takes the mean image's same window, mirrored with the image, which equals the
paper's "subtract the mean image, then crop and mirror". The result is
(B, C, crop, crop) float32 (or `dtype`: on a GPU the autocast dtype); its memory is NHWC,
i.e. already channels_last.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from lsvr.data.draws import Draws
from lsvr.data.readers import Batch


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
    0..255 kept), "channel" subtracts the per-channel mean and divides by the std (the mean
    image may then be None: a set of varying shape has none).
    crop: the side of the windows `center` and `ten_crops` cut (training's come on the Batch)."""

    def __init__(
        self,
        *,
        mean_image: np.ndarray | None,
        channel_mean: list[float],
        channel_std: list[float],
        crop: int,
        normalize: str = "mean_image",
        channels_last: bool = False,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.size = mean_image.shape[0] if mean_image is not None else 0  # the stored side; 0: shapes vary
        if normalize == "mean_image":  # only the mean image's windows must fit it
            if mean_image is None:
                raise ValueError("normalize=mean_image needs the mean image (a set of varying shape has none)")
            if crop > self.size or mean_image.shape[1] != self.size:
                raise ValueError(f"crop {crop} does not fit images of {mean_image.shape[:2]}")
        self.crop, self.normalize = crop, normalize
        self.channels_last, self.dtype = channels_last, dtype
        device = torch.device(device)
        if normalize == "mean_image":
            self.mean_image = torch.from_numpy(np.ascontiguousarray(mean_image)).to(device)  # (H, W, C)
            self.mean_mirrored = self.mean_image.flip(1).contiguous()
        self.channel_mean = torch.tensor(channel_mean, dtype=torch.float32, device=device)
        self._ring: deque[tuple[torch.Tensor, torch.Tensor]] = deque()  # train()'s buffers on CPU
        self.channel_inv_std = 1.0 / torch.tensor(channel_std, dtype=torch.float32, device=device).clamp_min(1e-3)
        if dtype != torch.float32 and normalize == "mean_image":  # gathered at half the bytes (fp16: within
            self.mean_half = self.mean_image.half()  # 1/32 of a pixel level under 128, 1/16 above)

    def train(self, batch: Batch) -> torch.Tensor:
        """A training batch, cut by its reader at its draws' windows: mirrored where the draws
        say, then normalised. On CPU the batch's uint8 images are mirrored in place."""
        if batch.draws is None:
            raise ValueError("Augment.train needs a batch cut at random windows: Loader(crop=...)")
        return self.apply(batch.images, batch.draws, reuse=True)

    def apply(self, images: torch.Tensor, draws: Draws, *, reuse: bool = False) -> torch.Tensor:
        """(B, crop, crop, C) uint8 windows at `draws` -> (B, C, crop, crop) float32: mirror, normalise.
        reuse (train): on CPU, per-channel normalisation writes into one of two buffers in turn,
        so the result stays intact through the next call, not the one after."""
        images = mirror_images(images, draws.mirror)
        if self.dtype != torch.float32:
            return self._in_dtype(images, draws)
        if self.normalize != "mean_image":
            return self._channel_normalized(images, self._buffers(images) if reuse else None)
        pixels = images.float()  # (B, crop, crop, C)
        if pixels.device.type == "cpu":
            pixels = self._subtract_mean_cpu(pixels, draws)
        else:  # the mean image gathered at each pixel's source position
            span = torch.arange(draws.crop, device=pixels.device)
            rows = draws.top[:, None] + span  # (B, crop)
            cols = torch.where(draws.mirror[:, None], draws.left[:, None] + draws.crop - 1 - span,
                               draws.left[:, None] + span)  # fmt: skip
            pixels = pixels - self.mean_image[rows[:, :, None], cols[:, None, :]]
        out = pixels.permute(0, 3, 1, 2)  # (B, C, crop, crop), NHWC in memory
        return out if self.channels_last else out.contiguous()

    def _in_dtype(self, images: torch.Tensor, draws: Draws) -> torch.Tensor:
        """The batch normalised straight into `dtype` (bf16 or fp16, the autocast dtype the model
        runs in): each pixel converted, normalised and rounded in one kernel, so no float32
        batch (158 MB at 256 x 227 x 227 x 3) is made. Per channel: x * (1/std) - mean/std
        in float32, rounded once; the mean image: gathered at its windows in fp16 and subtracted
        in fp16, within 1/8 of a pixel level of the float32 batch rounded to `dtype`."""
        planes = images.permute(0, 3, 1, 2)  # (B, C, H, W), NHWC memory
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.empty(planes.shape, dtype=self.dtype, device=images.device, memory_format=layout)
        if self.normalize != "mean_image":
            scale = self.channel_inv_std[:, None, None]
            return torch.addcmul(-self.channel_mean[:, None, None] * scale, planes, scale, out=out)
        span = torch.arange(draws.crop, device=images.device)
        rows = draws.top[:, None] + span  # (B, crop)
        cols = torch.where(draws.mirror[:, None], draws.left[:, None] + draws.crop - 1 - span,
                           draws.left[:, None] + span)  # fmt: skip
        mean = self.mean_half[rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        return torch.sub(planes, mean, out=out)

    def _channel_normalized(
        self, images: torch.Tensor, buffers: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """(B, H, W, C) uint8 -> (B, C, H, W) float32, (x - mean) / std per channel, the same bits
        either way. Measured on CPU at 224 px, one thread, per image: broadcasting over NHWC's
        trailing 3 is not vectorised (1.79 ms, float NHWC then contiguous NCHW: 0.69 ms with the
        statistics tiled along rows); so NCHW transposes the bytes first, then converts (0.27 ms),
        and channels_last normalises the NHWC rows with the statistics tiled (0.34 ms)."""
        if not self.channels_last:
            planes = images.permute(0, 3, 1, 2)  # (B, C, H, W); contiguous where the reader wrote planar memory
            if buffers is None:
                pixels = planes.contiguous().float()
            else:  # the same steps, into buffers that are already mapped
                nchw, pixels = buffers
                pixels.copy_(planes if planes.is_contiguous() else nchw.copy_(planes))
            return pixels.sub_(self.channel_mean[:, None, None]).mul_(self.channel_inv_std[:, None, None])
        pixels = images.float().contiguous() if buffers is None else buffers[1].copy_(images)  # (B, H, W, C)
        b, h, w, c = pixels.shape
        pixels.view(b * h, w * c).sub_(self.channel_mean.repeat(w)).mul_(self.channel_inv_std.repeat(w))
        return pixels.permute(0, 3, 1, 2)  # (B, C, H, W), NHWC in memory

    def _buffers(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Two (uint8, float32) buffer pairs for train()'s batches on CPU, used in turn (None on
        other devices: their allocator keeps freed memory mapped). A fresh float batch (77 MB at
        128 x 224 px) costs a page fault per 4 KB on first touch: normalising into a reused one
        took 0.25 ms an image against 0.72 ms fresh (one thread, 224 px)."""
        if images.device.type != "cpu":
            return None
        b, h, w, c = images.shape
        shape = (b, h, w, c) if self.channels_last else (b, c, h, w)
        while len(self._ring) < 2 or self._ring[0][1].shape != shape:
            if self._ring and self._ring[0][1].shape != shape:
                self._ring.clear()  # another batch size (an epoch's last, evaluation): start again
            self._ring.append((torch.empty(shape, dtype=torch.uint8), torch.empty(shape)))
        self._ring.rotate(1)
        return self._ring[0]

    def _subtract_mean_cpu(self, pixels: torch.Tensor, draws: Draws) -> torch.Tensor:
        """The mean image's crop windows, subtracted in place by slices: on CPU a gather of
        (B, crop, crop, C) floats costs more than the rest of the augmentation together."""
        width, crop = self.size, draws.crop
        for j, (t, lft, m) in enumerate(zip(*(v.tolist() for v in draws.tensors()), strict=True)):
            if m:  # the mirrored crop at left `lft` is the mirrored mean's window at width - lft - crop
                pixels[j] -= self.mean_mirrored[t : t + crop, width - lft - crop : width - lft]
            else:
                pixels[j] -= self.mean_image[t : t + crop, lft : lft + crop]
        return pixels

    def center(self, images: torch.Tensor, *, mirror: bool = False, shift: int = 0) -> torch.Tensor:
        """The centre crop of whole (B, H, W, C) images (offset (H-crop)//2: 14 for 227 of 256, as the
        paper), moved `shift` px down and right (negative: up and left)."""
        offset = (self.size - self.crop) // 2 + shift
        if not 0 <= offset <= self.size - self.crop:
            raise ValueError(f"a centre crop shifted {shift} px leaves the {self.size} px image")
        return self._view(images, offset, offset, mirror)

    def ten_crops(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The four corners and the centre, each with its mirror: 10 views of the batch."""
        far, mid = self.size - self.crop, (self.size - self.crop) // 2
        corners = ((0, 0), (0, far), (far, 0), (far, far), (mid, mid))
        return [self._view(images, top, left, mirror) for top, left in corners for mirror in (False, True)]

    def _view(self, images: torch.Tensor, top: int, left: int, mirror: bool) -> torch.Tensor:
        draws = Draws.fixed(len(images), top=top, left=left, mirror=mirror, crop=self.crop, device=images.device)
        return self.apply(draws.cut(images), draws)
