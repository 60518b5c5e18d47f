"""model.whiten: airbench's first layer (Jordan, 2024), for any model whose first conv sees the image.

The first conv's filters become the principal directions of the training images' patches (its
kernel's size, every channel), each scaled by 1 / sqrt(its variance + eps) so that its output has
unit variance, as pairs +v and -v (a ReLU after it keeps both signs' halves), largest variance
first; filters beyond twice the patch's dimensions keep their initialisation. The filters are
then frozen: the layer decorrelates the input from the first step on and is not trained. Only
the data decides it, so every rank (and a resume, before loading its weights) computes the same.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 5e-4  # added to each variance (inputs normalised to about unit variance): the flattest directions stay finite
MAX_PATCHES = 2_000_000  # patches the covariance is estimated from, at most
CHUNK_PATCHES = 50_000  # patches held at once (a 7x7 RGB conv's: 59 MB in float64)


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first conv: the layer that sees the image."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.groups != 1:
        raise ValueError("model.whiten: the model's first layer is not a plain conv")
    return conv


def images_needed(conv: nn.Conv2d, side: int, available: int) -> int:
    """How many images of `side` px give at most MAX_PATCHES patches for the conv (at least 1)."""
    kh, kw = conv.kernel_size
    per_image = max(1, (side - kh + 1) * (side - kw + 1))
    return max(1, min(available, MAX_PATCHES // per_image))


@torch.no_grad()
def whiten(conv: nn.Conv2d, images: torch.Tensor, eps: float = EPS) -> int:
    """Set `conv`'s filters from the patches of `images` (N, C, H, W), normalised as training
    feeds them, and freeze them; returns the number of filter pairs set."""
    kh, kw = conv.kernel_size
    channels, dims = images.shape[1], images.shape[1] * kh * kw
    per_image = max(1, (images.shape[2] - kh + 1) * (images.shape[3] - kw + 1))
    covariance = torch.zeros(dims, dims, dtype=torch.float64, device=images.device)
    count = 0
    for chunk in images.split(max(1, CHUNK_PATCHES // per_image)):  # a few MB of patches at a time
        patches = chunk.double().unfold(2, kh, 1).unfold(3, kw, 1)  # (n, C, H', W', kh, kw)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dims)  # one row per patch
        covariance += patches.T @ patches  # about the origin: the inputs are centred already
        count += len(patches)
    covariance /= count
    variances, vectors = torch.linalg.eigh(covariance)  # ascending
    pairs = min(conv.out_channels // 2, len(variances))
    scaled = vectors[:, -pairs:].flip(1) / torch.sqrt(variances[-pairs:].flip(0) + eps)  # (dims, pairs), largest first
    filters = scaled.T.reshape(pairs, channels, kh, kw).to(conv.weight.dtype)
    conv.weight[: 2 * pairs] = torch.cat([filters, -filters])
    conv.weight.requires_grad_(False)
    return pairs
