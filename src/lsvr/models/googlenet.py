"""GoogLeNet (Inception v1, Szegedy et al. 2014, arXiv:1409.4842) in torchvision's layout.

Module names, nesting and order follow torchvision's `GoogLeNet`, so its state_dict keys
(`conv1.conv.weight`, `inception5b.branch4.1.conv.weight`, `aux1.fc2.bias`, ...) are ours.
torchvision's own departures from the paper are kept because its weights depend on them:
BatchNorm after every conv (eps 0.001, convs without bias) and a 3x3 conv in the "5x5" branch.

6,624,904 parameters at 1000 classes without the auxiliary classifiers (torchvision's published
count); with them (`aux_logits=True`, torchvision's default when built from scratch) 13,004,888.
torchvision's ImageNet weights file holds aux1/aux2 as well: it loads strictly only into a model
built with `aux_logits=True`.
"""

from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's tuple, in its order: the main logits, then aux2's (after inception4d), then aux1's
# (after inception4a), so code written against torchvision's training output reads ours unchanged.
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# Per channel: torchvision's weights were trained on (x - 0.5) / 0.5 of [0, 1] pixels, while its
# preprocessing gives (x - mean) / std with ImageNet's mean and std; transform_input maps one to the other.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm (eps 0.001) -> ReLU, as torchvision's `BasicConv2d`."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1; 1x1->3x3; 1x1->3x3 (the paper's 5x5,
    3x3 in torchvision's weights); 3x3 max-pool->1x1."""

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1), BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1), BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, sum of branch widths, H, W)
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """The auxiliary classifier: 4x4 average pool, 1x1 conv to 128, fc 2048->1024, dropout, fc."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))  # (B, 128, 4, 4)
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet; forward returns the logits tensor, or in training with aux_logits
    torchvision's `GoogLeNetOutputs` tuple."""

    default_crop = 224

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        if transform_input and in_channels != 3:
            raise ValueError(f"googlenet: transform_input re-scales 3 ImageNet channels; the input has {in_channels}")
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        # (x_norm * std + mean - 0.5) / 0.5 per channel, as torchvision computes it
        channels = [
            x[:, i : i + 1] * (std / 0.5) + (mean - 0.5) / 0.5
            for i, (mean, std) in enumerate(zip(_IMAGENET_MEAN, _IMAGENET_STD, strict=True))
        ]
        return torch.cat(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:  # (B, C, crop, crop) -> (B, classes)
        x = self._transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))  # (B, 192, crop/8, crop/8)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (B, 480, crop/16, crop/16)
        x = self.inception4a(x)  # (B, 512, ...)
        with_aux = self.training and self.aux1 is not None and self.aux2 is not None and self.aux_logits
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, ...)
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))  # (B, 832, crop/32, crop/32)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, ...)
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))  # (B, classes)
        if with_aux:
            return GoogLeNetOutputs(x, aux2, aux1)  # torchvision's order: see GoogLeNetOutputs
        return x


def googlenet(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    crop: int = 224,
    dropout: float = 0.2,
    aux_logits: bool = False,
    transform_input: bool = False,
    **kw,
) -> GoogLeNet:
    """torchvision's googlenet; global average pooling takes any crop of 15 px or more (five halvings).

    `aux_logits` is off by default (the published 6,624,904 counts without it; torchvision builds it
    from scratch). `transform_input=True` for torchvision's ImageNet weights, which expect it.
    """
    if crop < 15:
        raise ValueError(f"crop {crop} is too small for googlenet (at least 15)")
    return GoogLeNet(
        num_classes=num_classes,
        in_channels=in_channels,
        aux_logits=aux_logits,
        transform_input=transform_input,
        dropout=dropout,
        **kw,
    )
