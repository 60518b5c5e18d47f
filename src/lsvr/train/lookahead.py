"""Lookahead (Zhang, Lucas, Hinton and Ba 2019, arXiv:1907.08610): the optimizer takes k fast
steps, then the slow weights move a fraction alpha of the way to the fast ones and the fast
weights start again from them.

As in airbench, whose CIFAR-10 recipe pulls the whole state_dict back, BatchNorm's running mean
and variance are weights here too; integer buffers (num_batches_tracked) are left alone, and the
optimizer's momentum is kept (the paper's choice). The slow copy lives on the model's device in
the model's dtype and memory format; a checkpoint holds it under `lookahead`, so a resume in the
middle of a k-step cycle is exact.
"""

from __future__ import annotations

import torch
from torch import nn

from lsvr.errors import InputError


class Lookahead:
    """The slow weights of `model`, started at its current ones (train.lookahead_steps,
    train.lookahead_alpha). The model's tensors are held by reference, as WeightEMA holds them:
    build it once the model sits on its device and in its memory format."""

    def __init__(self, model: nn.Module, *, steps: int, alpha: float) -> None:
        self.steps, self.alpha = steps, alpha
        state = model.state_dict(keep_vars=True)
        self.names = [name for name, t in state.items() if t.is_floating_point()]
        self._fast = [state[name].detach() for name in self.names]
        self._slow = [t.clone() for t in self._fast]  # clone keeps each tensor's strides (channels_last)

    @torch.no_grad()
    def after_update(self, step: int) -> None:
        """After update number `step` (1-based; the cycle is a function of the step alone, so a
        k-th step skipped as non-finite skips its pull): at every k-th, slow += alpha * (fast -
        slow), then fast = slow."""
        if step % self.steps:
            return
        torch._foreach_lerp_(self._slow, self._fast, self.alpha)
        torch._foreach_copy_(self._fast, self._slow)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The slow weights by the model's state_dict names (what a checkpoint's `lookahead` holds)."""
        return dict(zip(self.names, self._slow, strict=True))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """From a checkpoint's `lookahead` (or its `model`, which starts a cycle at its weights),
        in place; InputError where it does not fit."""
        missing = [name for name in self.names if name not in state]
        if missing:
            raise InputError(f"its lookahead weights do not fit this config's model (no {missing[0]})")
        for name, slow in zip(self.names, self._slow, strict=True):
            if state[name].shape != slow.shape:
                raise InputError(f"its lookahead weights do not fit this config's model ({name} is"
                                 f" {tuple(state[name].shape)}, the model's {tuple(slow.shape)})")  # fmt: skip
            slow.copy_(state[name])
