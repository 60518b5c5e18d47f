"""ConvNeXt (Liu et al. 2022, arXiv:2201.03545) in torchvision's layout.

Module names, nesting and order follow torchvision's `ConvNeXt`: `features` holds the stem
(`features.0`: 4x4 stride-4 conv, LayerNorm2d), then stage, downsample, stage, ... (`features.1`
to `features.7`); each stage is a Sequential of CNBlocks whose `block` is dwconv 7x7, Permute,
LayerNorm, Linear, GELU, Linear, Permute (keys `block.0`, `block.2`, `block.3`, `block.5`), with a
per-channel `layer_scale` of shape (C, 1, 1); `classifier` is LayerNorm2d, Flatten, Linear.

convnext_tiny: 28,589,128 parameters at 1000 classes (torchvision's count).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (torchvision's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class StochasticDepth(nn.Module):
    """Drop a residual branch for whole samples ("row") or the whole batch, in training only,
    scaling the survivors by 1/(1-p) (Huang et al. 2016; torchvision.ops.StochasticDepth)."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stochastic depth probability must be within [0, 1], got {p}")
        if mode not in ("row", "batch"):
            raise ValueError(f"stochastic depth mode must be 'row' or 'batch', got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim  # (B, 1, 1, 1) per sample
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class CNBlock(nn.Module):
    """x + drop(layer_scale * pwconv(GELU(pwconv(LN(dwconv7x7(x))))))."""

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),  # channels last for the LayerNorm and the Linears
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(nn.Module):
    """torchvision's ConvNeXt; `stages` is (width, blocks) per stage, widths doubling between them."""

    default_crop = 224

    def __init__(
        self,
        *,
        stages: Sequence[tuple[int, int]],
        num_classes: int = 1000,
        in_channels: int = 3,
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        norm2d = partial(LayerNorm2d, eps=1e-6)
        stem = nn.Sequential(
            nn.Conv2d(in_channels, stages[0][0], kernel_size=4, stride=4, bias=True), norm2d(stages[0][0])
        )
        layers: list[nn.Module] = [stem]
        total = sum(blocks for _, blocks in stages)
        block_id = 0
        for i, (width, blocks) in enumerate(stages):
            stage = []
            for _ in range(blocks):  # drop probability rises linearly from 0 to the last block's
                stage.append(CNBlock(width, layer_scale, stochastic_depth_prob * block_id / (total - 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(stages):
                out = stages[i + 1][0]
                layers.append(nn.Sequential(norm2d(width), nn.Conv2d(width, out, kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = stages[-1][0]
        self.classifier = nn.Sequential(norm2d(last), nn.Flatten(1), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, crop, crop) -> (B, classes)
        return self.classifier(self.avgpool(self.features(x)))  # features: (B, 768, crop/32, crop/32)


def convnext_tiny(
    *, num_classes: int = 1000, in_channels: int = 3, crop: int = 224, dropout: float = 0.0, **kw
) -> ConvNeXt:
    """ConvNeXt-T: widths 96/192/384/768, blocks 3/3/9/3, stochastic depth 0.1 (torchvision's default).

    `dropout` is unused (torchvision's ConvNeXt has no classifier dropout); `stochastic_depth_prob`
    and `layer_scale` may be given. Any crop of 32 px or more (four stride-2 steps after a stride 4).
    """
    if crop < 32:
        raise ValueError(f"crop {crop} is too small for convnext_tiny (at least 32)")
    kw.setdefault("stochastic_depth_prob", 0.1)
    return ConvNeXt(
        stages=((96, 3), (192, 3), (384, 9), (768, 3)), num_classes=num_classes, in_channels=in_channels, **kw
    )
