"""The Trainer's parts save and load themselves (lsvr.train.parts), and a checkpoint is made of
them and restored into them without a Trainer (lsvr.train.resume): the record they write is
format 2's, and loading it back gives the same state, the RNGs' next draws included."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from lsvr.config import Config, OptimConfig, TrainConfig
from lsvr.errors import InputError
from lsvr.preprocess import Preprocess
from lsvr.runs.record import FORMAT
from lsvr.train.optim import build_optimizer
from lsvr.train.parts import TrainingParts
from lsvr.train.resume import record_of, restore
from lsvr.train.state import RNGs, RunState


def _parts(*, seed: int, ema: bool = True) -> TrainingParts:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 6, 6))  # the lazy layer takes its shape
    train = TrainConfig(ema=0.9 if ema else 0.0, lookahead_steps=2 if ema else 0)
    return TrainingParts.of(model, optimizer=build_optimizer(model, OptimConfig(lr=0.1, momentum=0.9)),
                            scaler=torch.amp.GradScaler("cpu", enabled=False), state=RunState(global_batch=8),
                            train=train)  # fmt: skip


def _step(parts: TrainingParts) -> None:
    loss = parts.model(torch.randn(4, 3, 6, 6)).square().mean()
    loss.backward()
    parts.optimizer.optimizer.step()
    parts.ema.update()
    parts.lookahead.after_update(parts.state.step + 1)
    parts.state.step, parts.state.batch = parts.state.step + 1, parts.state.batch + 1


def _draws() -> tuple[float, ...]:
    return torch.rand(1).item(), float(np.random.rand()), random.random()


def test_a_record_of_the_parts_restores_into_other_parts_exactly(tmp_path):
    parts = _parts(seed=0)
    for _ in range(3):
        _step(parts)
    record = record_of(parts, cfg=Config(), preprocess=Preprocess(), world=1, run_id="r1")
    assert record.format == FORMAT and record.scheduler == {"step": 3} and record.scaler == {}
    assert record.loader == {"epoch": 0, "step": 3, "sample": 24, "global_batch": 8}
    path = tmp_path / "step-00000003.pt"
    torch.save(record.to_dict(), path)
    expected = _draws()
    other, said = _parts(seed=1), []
    restore(other, path, forked=False, validates=True, say=said.append)
    assert _draws() == expected  # every RNG continues where the record was made
    again = record_of(other, cfg=Config(), preprocess=Preprocess(), world=1, run_id="r1")
    for name in ("model", "ema", "lookahead"):
        ours, theirs = getattr(record, name), getattr(again, name)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    saved, loaded = record.optimizer["state"], again.optimizer["state"]
    assert saved and saved.keys() == loaded.keys()
    for i in saved:  # the momentum (and whatever else the optimizer keeps) of every parameter
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(loaded[i][k])) for k, v in saved[i].items())
    assert (other.state.step, other.state.batch) == (3, 3)
    assert said == [f"lsvr train: resumed from {path} at step 3 (epoch 1)"]


def test_the_optimizer_part_keeps_the_configs_group_settings():
    parts, other = _parts(seed=0), _parts(seed=0)
    for group in other.optimizer.optimizer.param_groups:
        group["weight_decay"] = 0.123  # a change lsvr.train.changes accepted
    other.optimizer.load_state_dict(parts.optimizer.state_dict())
    assert {g["weight_decay"] for g in other.optimizer.optimizer.param_groups} == {0.123}


def test_a_part_that_does_not_fit_is_refused_naming_the_checkpoint(tmp_path):
    parts = _parts(seed=0)
    path = tmp_path / "step-00000000.pt"
    record = record_of(parts, cfg=Config(), preprocess=Preprocess(), world=1, run_id="r1")
    torch.save({**record.to_dict(), "loader": {**record.loader, "global_batch": 16}}, path)
    with pytest.raises(InputError, match=f"{path}: written with train.global_batch=16; resume with it"):
        restore(_parts(seed=0), path, forked=False, validates=True, say=print)
    torch.save({**record.to_dict(), "ema": {"0.weight": torch.zeros(1)}}, path)
    with pytest.raises(InputError, match=f"{path}: its ema does not fit this config's model"):
        restore(_parts(seed=0), path, forked=False, validates=True, say=print)


def test_the_rngs_part_round_trips_every_generator():
    rngs = RNGs()
    state = rngs.state_dict()
    expected = _draws()
    rngs.load_state_dict(state)
    assert _draws() == expected
