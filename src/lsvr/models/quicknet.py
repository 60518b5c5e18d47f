"""A small, fast CNN for 28-64 px inputs, in airbench's layout (Jordan, 2024: CIFAR-10 at 94% in
seconds): a 3x3 stem, then three stages of conv -> 2x2 max pool -> BN -> ReLU -> conv -> BN -> ReLU,
a global max pool and one linear layer. No strides and no fixed-size classifier input: any side
from 8 px up runs, so progressive resizing (data.res_*) can train it at small sides.

ReLU in place of airbench's GELU: on a CPU it is the cheaper of the two, and in place.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

WIDTHS = (16, 32, 64, 128)  # the stem's and the three stages' channels at model.width 1.0


def _conv_bn(c_in: int, c_out: int, *, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:  # pool before the norm: BN and ReLU then run on a quarter of the pixels
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class QuickNet(nn.Module):
    """7 convs with BatchNorm, 3 max pools, a global max pool and a linear classifier."""

    default_crop = 28

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, crop: int = 28, width: float = 1.0,
                 dropout: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        if crop < 8:
            raise ValueError(f"crop {crop} is too small for quicknet (at least 8)")
        stem, *stages = (max(8, round(w * width / 8) * 8) for w in WIDTHS)
        layers = [("stem", nn.Sequential(*_conv_bn(in_channels, stem, pool=False)))]
        c_in = stem
        for i, c_out in enumerate(stages, start=1):
            block = [*_conv_bn(c_in, c_out, pool=True), *_conv_bn(c_out, c_out, pool=False)]
            layers.append((f"stage{i}", nn.Sequential(*block)))
            c_in = c_out
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, side, side) -> (B, classes)
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))
