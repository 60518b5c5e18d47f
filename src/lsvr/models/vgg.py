"""VGG (Simonyan and Zisserman 2014, arXiv:1409.1556) in torchvision's module and key layout.

torchvision's `vgg*` and `vgg*_bn` weights files load as they are: `features` is one flat
Sequential (conv, [BatchNorm,] ReLU per layer, max-pool per stage), so a key's index counts
the modules before it; `avgpool` brings any crop of 32 px or more to 7x7; `classifier` is
Linear 25088-4096, ReLU, Dropout, Linear 4096-4096, ReLU, Dropout, Linear. Init as
torchvision: Kaiming-normal (fan_out, ReLU) convs with bias 0, BatchNorm 1 and 0, Linear
N(0, 0.01) with bias 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Output channels of each 3x3 conv, "M" a 2x2 max-pool: the paper's configurations A, B, D, E.
LAYOUTS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _features(layout: list[int | str], *, in_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in layout:
        if not isinstance(v, int):  # "M"
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(in_channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """3x3 convs in five stages, each halving the side; three fully connected layers."""

    def __init__(
        self,
        layout: list[int | str],
        *,
        batch_norm: bool,
        num_classes: int = 1000,
        in_channels: int = 3,
        crop: int = 224,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if crop < 32:  # five 2x2 pools: a side under 32 pools to nothing
            raise ValueError(f"crop {crop} is too small for vgg (at least 32)")
        self.features = _features(layout, in_channels=in_channels, batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        x = self.avgpool(self.features(x))  # (B, 512, 7, 7)
        return self.classifier(torch.flatten(x, 1))


# The builders take the registry's keywords (num_classes, in_channels, crop, dropout).


def vgg11(**kw: Any) -> VGG:
    return VGG(LAYOUTS[11], batch_norm=False, **kw)


def vgg11_bn(**kw: Any) -> VGG:
    return VGG(LAYOUTS[11], batch_norm=True, **kw)


def vgg13(**kw: Any) -> VGG:
    return VGG(LAYOUTS[13], batch_norm=False, **kw)


def vgg13_bn(**kw: Any) -> VGG:
    return VGG(LAYOUTS[13], batch_norm=True, **kw)


def vgg16(**kw: Any) -> VGG:
    """138,357,544 parameters at 1000 classes."""
    return VGG(LAYOUTS[16], batch_norm=False, **kw)


def vgg16_bn(**kw: Any) -> VGG:
    """138,365,992 parameters at 1000 classes."""
    return VGG(LAYOUTS[16], batch_norm=True, **kw)


def vgg19(**kw: Any) -> VGG:
    return VGG(LAYOUTS[19], batch_norm=False, **kw)


def vgg19_bn(**kw: Any) -> VGG:
    return VGG(LAYOUTS[19], batch_norm=True, **kw)
