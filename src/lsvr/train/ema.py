"""An exponential moving average (EMA) of the weights, BatchNorm statistics included.

After every applied update, each floating-point entry of the model's state_dict (parameters,
BatchNorm running mean and variance) moves toward the model's: avg <- avg + (1 - decay) *
(model - avg); integer buffers (BatchNorm's num_batches_tracked) are copied. The average is a
whole copy of the model (fp32, on the model's device), so validation and inference run it as it
is, and its state_dict is what a checkpoint holds under `ema`.

train.ema gives the decay per step; train.ema_halflife a half-life in images, so that the same
value averages over the same number of images at any global batch:
decay = 0.5 ** (global_batch / halflife).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lsvr.config import TrainConfig
from lsvr.errors import InputError
from lsvr.train.parallel import Distributed, all_sum


def ema_decay(train: TrainConfig) -> float | None:
    """The decay per step that train.ema or train.ema_halflife asks for; None where the EMA is off."""
    if train.ema_halflife:
        return 0.5 ** (train.global_batch / train.ema_halflife)
    return train.ema or None


class WeightEMA:
    """The average of `model`'s weights, started at its current ones.

    The model's tensors are held by reference: optimizers and load_state_dict update them in
    place, so a step reads no state_dict. Build it once the model sits on its device and in its
    memory format (a later `.to()` would leave the references behind)."""

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).float().eval().requires_grad_(False)
        source, average = model.state_dict(keep_vars=True), self.module.state_dict(keep_vars=True)
        floats = [name for name, t in source.items() if t.is_floating_point()]
        others = [name for name, t in source.items() if not t.is_floating_point()]
        self._sources = [source[n].detach() for n in floats]
        self._averages = [average[n].detach() for n in floats]
        self._counters = [(source[n].detach(), average[n].detach()) for n in others]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average toward the model's current weights and buffers."""
        # foreach: one kernel launch per group of tensors rather than one per tensor
        sources = [t.float() for t in self._sources]  # a no-op for fp32 models: the weights stay fp32
        torch._foreach_lerp_(self._averages, sources, 1.0 - self.decay)
        for source, average in self._counters:
            average.copy_(source)

    @torch.no_grad()
    def average_over(self, env: Distributed) -> None:
        """parallel.mode=average with average_every > 1: the ranks' averages drift apart with their
        weights between exchanges; their mean (the EMA is linear: the mean of the ranks' averages is
        the average of their mean weights) is every rank's, as the weights' mean is."""
        if env.world == 1:
            return
        for average in self._averages:
            all_sum(average, env).div_(env.world)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The average as a state_dict of the model (what a checkpoint's `ema` holds)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """From a checkpoint's `ema`, in place (the references stay valid); InputError where it does not fit."""
        try:
            self.module.load_state_dict(state)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"its ema does not fit this config's model ({str(exc).splitlines()[0]})") from None
