"""The Trainer's parts that a checkpoint holds, each saving and loading itself, as torchtitan's
Stateful parts do (torch.distributed.checkpoint.stateful's shape): `state_dict()` gives the
part's entries, `load_state_dict(state)` takes them back in place. The parts: the model, the
optimizer, fp16's scaler, the EMA, the Lookahead, RunState and the RNGs. lsvr.train.resume turns
them into a CheckpointRecord and back; it reads no Trainer attribute, and no part reads
another's entries.

A part refuses entries that do not fit it with an InputError (or torch's RuntimeError or
ValueError for the model and optimizer); the resume names the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lsvr.config import TrainConfig
from lsvr.train.ema import WeightEMA, ema_decay
from lsvr.train.lookahead import Lookahead
from lsvr.train.state import RNGs, RunState


class OptimizerPart:
    """The optimizer's state. Loading keeps the config's group settings (decay, momentum, betas,
    lr multiplier): torch's load_state_dict would give each group the saved ones, and the
    config's are the run's (a change lsvr.train.changes accepted; the same values otherwise)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        settings = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state)
        for group, setting in zip(self.optimizer.param_groups, settings, strict=True):
            group.update(setting)


class ScalerPart:
    """fp16's GradScaler: {} while it is off (what a checkpoint then holds), and {} loads nothing."""

    def __init__(self, scaler: torch.amp.GradScaler) -> None:
        self.scaler = scaler

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)


@dataclass
class TrainingParts:
    """Every part of a run a checkpoint holds; the Trainer builds the parts and steps them, the
    resume saves and loads them. `state` holds the position, the scores and the time budget's
    plan (the lr schedule is a function of its step); `ema` and `lookahead` exist where the
    config asks for them."""

    model: nn.Module  # the unwrapped model (torch's own state_dict and load_state_dict)
    optimizer: OptimizerPart
    scaler: ScalerPart
    state: RunState
    rngs: RNGs
    ema: WeightEMA | None = None
    lookahead: Lookahead | None = None

    @classmethod
    def of(cls, model: nn.Module, *, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
           state: RunState, train: TrainConfig) -> TrainingParts:  # fmt: skip
        """The parts of a built model, optimizer and scaler, with the EMA and the Lookahead that
        train asks for (started at the model's weights; on its device: they hold its tensors)."""
        decay, k = ema_decay(train), train.lookahead_steps
        return cls(
            model=model,
            optimizer=OptimizerPart(optimizer),
            scaler=ScalerPart(scaler),
            state=state,
            rngs=RNGs(),
            ema=WeightEMA(model, decay=decay) if decay else None,
            lookahead=Lookahead(model, steps=k, alpha=train.lookahead_alpha) if k else None,
        )
