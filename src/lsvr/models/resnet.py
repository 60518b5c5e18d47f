"""ResNet (He et al. 2015, arXiv:1512.03385) in torchvision's module and key layout.

torchvision's `resnet*` weights files load as they are: the same attribute names (conv1, bn1,
relu, maxpool, layer1..layer4, avgpool, fc), the same nesting and registration order, the
shortcut as `downsample = Sequential(conv1x1, BatchNorm2d)`. This is ResNet v1.5: a
Bottleneck strides on its 3x3 conv, not on the first 1x1 as the paper did (torchvision's
choice, about +0.5% top-1 at about 5% more compute). Init as torchvision: Kaiming-normal
(fan_out, ReLU) convs, BatchNorm weight 1 and bias 0, the fc layer left at torch's default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and the shortcut (resnet18, resnet34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 down to `planes`, 3x3 (carrying the stride: v1.5), 1x1 up to 4 x `planes`."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max-pool), four stages of blocks, global average pool, fc.

    Any crop works (the pool is adaptive); 224 is the one its published figures use.
    `zero_init_residual` starts each block's last BatchNorm at gamma 0, so every block begins
    as the identity (Goyal et al. 2017, arXiv:1706.02677 section 5.1).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512 * expansion, H/32, W/32)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(
    block: type[BasicBlock | Bottleneck],
    layers: tuple[int, int, int, int],
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    crop: int = 224,
    dropout: float = 0.0,
    zero_init_residual: bool = False,
) -> ResNet:
    """The registry's keywords; `crop` (any works) and `dropout` (ResNet has none) are unused."""
    return ResNet(
        block, layers, num_classes=num_classes, in_channels=in_channels, zero_init_residual=zero_init_residual
    )


def resnet18(**kw: Any) -> ResNet:
    """11,689,512 parameters at 1000 classes; keywords as `_resnet`."""
    return _resnet(BasicBlock, (2, 2, 2, 2), **kw)


def resnet34(**kw: Any) -> ResNet:
    """21,797,672 parameters at 1000 classes."""
    return _resnet(BasicBlock, (3, 4, 6, 3), **kw)


def resnet50(**kw: Any) -> ResNet:
    """25,557,032 parameters at 1000 classes."""
    return _resnet(Bottleneck, (3, 4, 6, 3), **kw)


def resnet101(**kw: Any) -> ResNet:
    """44,549,160 parameters at 1000 classes."""
    return _resnet(Bottleneck, (3, 4, 23, 3), **kw)


def resnet152(**kw: Any) -> ResNet:
    """60,192,808 parameters at 1000 classes."""
    return _resnet(Bottleneck, (3, 8, 36, 3), **kw)
