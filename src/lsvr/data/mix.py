"""Mixup and CutMix: each training batch blended with itself rolled by one, on the device.

Mixup (Zhang et al. 2018) replaces a batch x by lam * x + (1 - lam) * x.roll(1) and its
one-hot targets likewise; CutMix (Yun et al. 2019) pastes one box of the rolled batch into
every image and weighs the targets by the area each image keeps. The rules are torchvision's
reference recipe (RandomMixup, RandomCutMix): one lambda per batch from Beta(alpha, alpha),
the partner of image i is image i - 1 of the same batch (rolled by one), the box's centre is
uniform over the image, its sides sqrt(1 - lam) of the image's, clipped at the border, and
lambda corrected to the area the clipped box really covers. With both on, each batch takes
CutMix with probability data.mix_switch and Mixup otherwise (timm's switch_prob).

Determinism: a batch's draws (which of the two, lambda, the box's centre) come from a numpy
generator seeded with the key of the global batch's first sample (data/draws.py: a hash of
(seed, epoch, position)) and a constant of its own, so a resumed run draws them again without
saved generator state, and every rank, at any world size, draws the same ones for the same
global batch (numpy's Generator: the same numpy draws the same; its Beta sampler may change
between numpy releases, so a resume on another numpy is close, not bitwise). The pairing is
within a rank's batch: at another world size the images at the ranks' borders get other
partners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from lsvr.data.draws import sample_keys

# Mixed into the seed with the batch key, so the mix's draws are not the crop's (which reads
# the same key's bits directly). Any constant does; this one spells "lsvr mix".
_MIX_STREAM = 0x6C737672206D6978


@dataclass(frozen=True)
class MixDraw:
    """One batch's mix: which, the weight lam each image keeps of itself, and CutMix's box
    (rows top:bottom, columns left:right of the rolled batch pasted in; empty for Mixup)."""

    kind: Literal["mixup", "cutmix"]
    lam: float
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right


class Mix:
    """mixup, cutmix: the alphas of Beta(alpha, alpha), 0 for off (data.mixup, data.cutmix);
    switch: the chance of CutMix in a batch where both are on (data.mix_switch); seed and
    global_batch: the run's, which with (epoch, step) name the batch's key. Off (both 0), a
    call returns its inputs as they are."""

    def __init__(self, *, mixup: float, cutmix: float, switch: float, num_classes: int, seed: int,
                 global_batch: int) -> None:  # fmt: skip
        self.mixup, self.cutmix, self.switch = mixup, cutmix, switch
        self.num_classes, self.seed, self.global_batch = num_classes, seed, global_batch

    @property
    def on(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def draw(self, *, epoch: int, step: int, height: int, width: int) -> MixDraw:
        """The mix of global batch `step` of epoch `epoch`, for images of height x width."""
        key = sample_keys(self.seed, epoch, np.array([step * self.global_batch]))[0]
        rng = np.random.default_rng([int(key), _MIX_STREAM])
        use_cutmix = rng.random() < self.switch if self.mixup > 0 and self.cutmix > 0 else self.cutmix > 0
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(rng.beta(alpha, alpha))
        if not use_cutmix:
            return MixDraw("mixup", lam)
        centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
        half = 0.5 * np.sqrt(1.0 - lam)  # the box's half-side as a fraction of the image's side
        half_h, half_w = int(half * height), int(half * width)
        top, bottom = max(centre_y - half_h, 0), min(centre_y + half_h, height)
        left, right = max(centre_x - half_w, 0), min(centre_x + half_w, width)
        area = (bottom - top) * (right - left) / (height * width)
        return MixDraw("cutmix", 1.0 - area, (top, bottom, left, right))

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, *, epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) float images (changed in place) and (B,) class labels -> the mixed images
        and (B, num_classes) float targets, each row summing to 1."""
        if not self.on:
            return images, labels
        mix = self.draw(epoch=epoch, step=step, height=images.shape[2], width=images.shape[3])
        return apply(mix, images, labels, num_classes=self.num_classes)


def apply(mix: MixDraw, images: torch.Tensor, labels: torch.Tensor, *, num_classes: int
          ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The mix applied to (B, C, H, W) images in place (their memory format kept) and (B,)
    labels: (images, (B, num_classes) float32 targets)."""
    if mix.kind == "mixup":
        _blend_with_previous(images, mix.lam)
    else:  # only the box is copied, rolled: image i gets image i - 1's
        top, bottom, left, right = mix.box
        images[:, :, top:bottom, left:right] = images[:, :, top:bottom, left:right].roll(1, dims=0)
    targets = F.one_hot(labels, num_classes).float()  # (B, K)
    partners = targets.roll(1, dims=0)  # a copy, made before targets change in place
    targets.mul_(mix.lam).add_(partners, alpha=1.0 - mix.lam)
    return images, targets


def _blend_with_previous(images: torch.Tensor, lam: float) -> None:
    """images[i] = lam * images[i] + (1 - lam) * images[i - 1] (image 0 with the last), in place.
    On CPU image by image from the last, so each reads its partner before that is changed, with
    one image saved: a rolled copy of a 128 x 224 px batch and one blend took 165 ms on one
    core here, this 17 ms (fresh memory faults page by page). Elsewhere, the rolled copy."""
    if images.device.type != "cpu":
        images.lerp_(images.roll(1, dims=0), 1.0 - lam)
        return
    last = images[-1].clone()  # (C, H, W): image 0's partner, changed first
    for i in range(len(images) - 1, 0, -1):
        images[i].lerp_(images[i - 1], 1.0 - lam)
    images[0].lerp_(last, 1.0 - lam)
