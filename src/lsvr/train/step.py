"""One training step's arithmetic: forward and backward over the micro-batches, then the update."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from lsvr.config import GuardConfig, TrainConfig
from lsvr.evaluate import autocast


def step_forward_backward(
    net, optimizer, scaler, images: torch.Tensor, labels: torch.Tensor, train: TrainConfig
) -> torch.Tensor:
    """Forward and backward over train.accumulate micro-batches; returns the mean loss.
    labels: (B,) class indices, or (B, K) class probabilities (Mixup and CutMix's soft targets,
    data/mix.py), cut into the same chunks as the images: the mix is made over the whole batch
    first, so accumulation does not change it. train.label_smoothing applies to either: on
    probabilities F.cross_entropy takes (1 - eps) * p + eps / K, which, being linear, equals
    mixing the smoothed one-hot targets as torchvision's reference does."""
    optimizer.zero_grad(set_to_none=True)
    chunks = train.accumulate
    total = torch.zeros((), device=images.device)
    for i, (x, y) in enumerate(zip(images.chunk(chunks), labels.chunk(chunks), strict=True)):
        sync = i == chunks - 1 or not hasattr(net, "no_sync")
        with (
            contextlib.nullcontext() if sync else net.no_sync(),
            autocast(images.device, train.precision),
        ):
            loss = F.cross_entropy(net(x).float(), y, label_smoothing=train.label_smoothing)
        scaler.scale(loss / chunks).backward()
        total += loss.detach()
    return total / chunks


def apply_update(params: list, optimizer, scaler, guard: GuardConfig, grad_norm: torch.Tensor | None) -> None:
    """The update, clipped to guard.clip_norm with the norm the health check measured
    (fp16: after unscaling, so measured again)."""
    if guard.clip_norm:
        if grad_norm is None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, guard.clip_norm)
        else:
            torch.nn.utils.clip_grads_with_norm_(params, guard.clip_norm, grad_norm)
    scaler.step(optimizer)
    scaler.update()
