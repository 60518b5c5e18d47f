"""AlexNet as the paper trains it, torchvision's AlexNet layout, and a small variant.

The paper's network (Ding et al. 2014, arXiv:1412.2302; Krizhevsky et al. 2012): grouped
conv2/4/5 (groups=2, the two-GPU split of 2012), max-pool BEFORE LRN (the CaffeNet order),
LRN with k=2 and alpha NOT divided by the window size, Gaussian init with std 0.01 (0.005
for fc6/fc7) and biases of 0.1 on conv2, conv4, fc6, fc7. The classifier's input size
follows from the crop, so a 224 crop gives 256*5*5 = 6400 inputs instead of breaking as the
original did.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class PaperLRN(nn.LocalResponseNorm):
    """b = a / (k + alpha * sum_window a^2)^beta, with alpha NOT divided by the window size.

    torch divides alpha by `size`, so alpha*size is passed to get the paper's rule (seen: error
    1.2e-7 against the paper's formula that way, 2e-3 with plain alpha).

    On a GPU torch's LRN is about ten kernels (square, pad, pool, scale, power, divide), each
    reading and writing the activations: `fused_lrn` runs it as torch.compile's fusion of the
    same function instead (within 1e-5 relative of it; tests/test_gpu_paths.py), compiled at
    the first step. CPU keeps torch's op. FUSED = False (train.fused_lrn=false) turns it off;
    a compile that fails says so once and falls back to torch's op.
    """

    FUSED = True

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__(size, alpha * size, beta, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (PaperLRN.FUSED and x.is_cuda) or torch.compiler.is_compiling():  # a compiled model fuses it itself
            return super().forward(x)
        return fused_lrn(x, self.size, self.alpha, self.beta, self.k)


_compiled = None


def fused_lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """F.local_response_norm through torch.compile (one compile per shape, cached by torch)."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(F.local_response_norm, dynamic=False)
    try:
        return _compiled(x, size, alpha, beta, k)
    except Exception as exc:  # a device or toolchain torch.compile cannot use: torch's op, said once
        warnings.warn(f"fused LRN: torch.compile failed ({type(exc).__name__}: {exc}); using torch's LRN", stacklevel=2)
        PaperLRN.FUSED = False
        return F.local_response_norm(x, size, alpha, beta, k)


def _pool_out(n: int) -> int:
    return (n - 3) // 2 + 1  # max-pool 3, stride 2, no padding


def _conv_out(n: int, kernel: int, stride: int, pad: int) -> int:
    return (n + 2 * pad - kernel) // stride + 1


def _gaussian_(module: nn.Module, std: float, bias: float) -> None:
    nn.init.normal_(module.weight, mean=0.0, std=std)
    nn.init.constant_(module.bias, bias)


class AlexNet(nn.Module):
    """The paper's AlexNet: 60,965,224 parameters at 1000 classes and a 227 crop."""

    default_crop = 227

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, crop: int = 227, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 96, 11, stride=4),
                relu1=nn.ReLU(inplace=True),
                pool1=nn.MaxPool2d(3, 2),
                norm1=PaperLRN(),
                conv2=nn.Conv2d(96, 256, 5, padding=2, groups=2),
                relu2=nn.ReLU(inplace=True),
                pool2=nn.MaxPool2d(3, 2),
                norm2=PaperLRN(),
                conv3=nn.Conv2d(256, 384, 3, padding=1),
                relu3=nn.ReLU(inplace=True),
                conv4=nn.Conv2d(384, 384, 3, padding=1, groups=2),
                relu4=nn.ReLU(inplace=True),
                conv5=nn.Conv2d(384, 256, 3, padding=1, groups=2),
                relu5=nn.ReLU(inplace=True),
                pool5=nn.MaxPool2d(3, 2),
            )
        )
        side = _pool_out(_pool_out(_pool_out(_conv_out(crop, 11, 4, 0))))
        if side < 1:
            raise ValueError(f"crop {crop} is too small for alexnet (at least 67)")
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(256 * side * side, 4096),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc8=nn.Linear(4096, num_classes),
            )
        )
        f, c = self.features, self.classifier
        for layer, std, bias in (
            (f.conv1, 0.01, 0.0),
            (f.conv2, 0.01, 0.1),
            (f.conv3, 0.01, 0.0),
            (f.conv4, 0.01, 0.1),
            (f.conv5, 0.01, 0.0),
            (c.fc6, 0.005, 0.1),
            (c.fc7, 0.005, 0.1),
            (c.fc8, 0.01, 0.0),
        ):
            _gaussian_(layer, std, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, crop, crop) -> (B, classes)
        return self.classifier(torch.flatten(self.features(x), 1))


class AlexNetTV(nn.Module):
    """torchvision's AlexNet: the same layer names and shapes, so its weights files load as they are."""

    default_crop = 224

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, crop: int = 224, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        if _pool_out(_pool_out(_pool_out(_conv_out(crop, 11, 4, 2)))) < 1:
            raise ValueError(f"crop {crop} is too small for alexnet_tv (at least 63)")
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, crop, crop) -> (B, classes)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNetSmall(nn.Module):
    """The paper's structure for 28 to 64 px inputs: five convs (2, 4, 5 grouped), pool->LRN
    after conv1 and conv2, pool after conv5, three fully connected layers with dropout.

    conv1 is 5x5 with stride 1 instead of 11x11 stride 4, widths are scaled down, and the
    init is He-normal: at this size the paper's fixed std 0.01 trains far slower.
    """

    default_crop = 28

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        crop: int = 28,
        dropout: float = 0.5,
        width: float = 1.0,
        batchnorm: bool = False,
    ):
        super().__init__()
        # Widths at width 1.0, in multiples of 8 so the groups=2 convs split evenly.
        c1, c2, c3, c4, c5, fc = (max(8, round(w * width / 8) * 8) for w in (64, 128, 192, 192, 128, 512))

        def conv(name: str, c_in: int, c_out: int, kernel: int, groups: int) -> list:
            layers = [(f"conv{name}", nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups))]
            if batchnorm:  # BN in place of LRN: same layout, several times faster to converge
                layers.append((f"bn{name}", nn.BatchNorm2d(c_out)))
            return [*layers, (f"relu{name}", nn.ReLU(inplace=True))]

        def pool_norm(name: str) -> list:
            return [(f"pool{name}", nn.MaxPool2d(3, 2))] + ([] if batchnorm else [(f"norm{name}", PaperLRN())])

        layers = [
            *conv("1", in_channels, c1, 5, 1),
            *pool_norm("1"),
            *conv("2", c1, c2, 5, 2),
            *pool_norm("2"),
            *conv("3", c2, c3, 3, 1),
            *conv("4", c3, c4, 3, 2),
            *conv("5", c4, c5, 3, 2),
            ("pool5", nn.MaxPool2d(3, 2)),
        ]
        self.features = nn.Sequential(OrderedDict(layers))
        side = _pool_out(_pool_out(_pool_out(crop)))
        if side < 1:
            raise ValueError(f"crop {crop} is too small for alexnet_small (at least 15)")
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(c5 * side * side, fc),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(fc, fc),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc8=nn.Linear(fc, num_classes),
            )
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.fc8.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, crop, crop) -> (B, classes)
        return self.classifier(torch.flatten(self.features(x), 1))
