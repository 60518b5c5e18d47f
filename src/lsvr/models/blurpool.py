"""BlurPool as FFCV's ResNet recipe applies it: a fixed 3x3 binomial blur before each strided conv.

Zhang (2019), "Making Convolutional Networks Shift-Invariant Again": a stride samples its
input without a low-pass filter first, and aliases. FFCV's ImageNet trainer (`use_blurpool`)
puts the blur [1 2 1]^T [1 2 1] / 16, per channel, zero-padded by one, stride 1, in front of
every Conv2d with a stride above 1 and at least 16 input channels (a stem on the raw image is
left alone; max pools are too). FFCV wraps the conv (its keys become conv.conv.weight); here
the blurring conv is a Conv2d holding the same parameters under the same names, and its blur
kernel is a buffer that is not saved, so weights load into and out of it as into the plain
model: torchvision's files through model.init_from, checkpoints, exports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_CHANNELS = 16  # FFCV's rule: convs on fewer input channels (a stem on RGB) keep their stride's aliasing


def binomial_kernel(channels: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(channels, 1, 3, 3): the 3x3 binomial blur, summing to 1, one copy per channel (depthwise)."""
    row = torch.tensor([1.0, 2.0, 1.0], device=device)
    return (torch.outer(row, row) / 16.0).expand(channels, 1, 3, 3).contiguous()


class BlurConv2d(nn.Conv2d):
    """A Conv2d whose input is blurred first. It takes over `conv`'s weight and bias (the same
    Parameter objects, under the same names), so the state dict is the plain conv's."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                         bias=conv.bias is not None, padding_mode=conv.padding_mode, device="meta")  # fmt: skip
        self.weight = conv.weight
        self.bias = conv.bias
        blur = binomial_kernel(conv.in_channels, device=conv.weight.device).to(conv.weight.dtype)
        self.register_buffer("blur", blur, persistent=False)  # fixed: not learned, not saved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> blurred (B, C, H, W), then the strided conv
        blurred = F.conv2d(x, self.blur, padding=1, groups=self.in_channels)
        return super().forward(blurred)


def applies(conv: nn.Module) -> bool:
    """FFCV's rule: a Conv2d with a stride above 1 on at least 16 input channels."""
    return isinstance(conv, nn.Conv2d) and max(conv.stride) > 1 and conv.in_channels >= MIN_CHANNELS


def apply_blurpool(model: nn.Module) -> int:
    """Put the blur in front of every conv `applies` picks, in place; returns how many."""
    found = [(name, module) for name, module in model.named_modules() if applies(module)]
    for name, conv in found:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, BlurConv2d(conv))
    return len(found)
