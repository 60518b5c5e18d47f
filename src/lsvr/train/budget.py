"""train.time_budget_s: the step count that ends a run near a wall-clock budget.

Rank 0 times the first steps of the process (after a few warm-up steps), adds an estimate of
each validation's cost and the time spent since the process started, and fixes the total step
count from them; every rank receives it at the same step, and the checkpoint keeps it
(RunState.budget_steps), so the schedule stays a function of the step, a resume keeps the count
without timing anything again, and its result is the same as a run that was never stopped.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lsvr.config import Config
from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.preprocess import Preprocess
from lsvr.train.metrics import MetricsLog
from lsvr.train.parallel import Distributed

IMPORTED_AT = time.time()  # where /proc is not there, the process's start is taken as lsvr's import
WARMUP_STEPS = 3  # the first steps pay for allocation, the loader filling up, a compile: not timed
TIMED_STEPS = 6
# A validation image costs about one forward pass, a third of a training image's forward and
# backward (the backward pass costs about twice the forward).
FORWARD_SHARE = 1 / 3


def process_start() -> float:
    """The wall-clock time (time.time()) this process started: Linux's /proc/self/stat starttime
    (clock ticks since boot) placed on the wall clock through CLOCK_BOOTTIME, the clock it counts
    in; elsewhere, or where that reads as later than lsvr's import, the time lsvr was imported."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
        since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5); fields[0] is field 3
        started = time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
    except (OSError, ValueError, IndexError, AttributeError):
        return IMPORTED_AT
    return started if started <= IMPORTED_AT else IMPORTED_AT


def val_views(pre: Preprocess) -> int:
    """The views validation scores of each image: the centre, its mirror, the shifted crops."""
    return (2 if pre.eval_flip else 1) * (3 if pre.eval_shift else 1)


def synthetic_step_s(model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], *,
                     side: int, batch: int, channels: int, classes: int, precision: str = "fp32",
                     channels_last: bool = False, steps: int = 5) -> float:  # fmt: skip
    """Seconds one training step at `side` px takes: forward, backward and update of a copy of the
    model (the model, its optimizer and the global random state left as they were) on random
    images; the median of the last `steps` - 2 intervals."""
    from lsvr.evaluate import autocast

    device = next(model.parameters()).device
    copy = deepcopy(model).train()
    optimizer = make_optimizer(copy)
    generator = torch.Generator().manual_seed(side)
    images = torch.randn(batch, channels, side, side, generator=generator).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(classes, (batch,), generator=generator).to(device)
    marks = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for _ in range(steps + 1):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = F.cross_entropy(copy(images).float(), labels)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks.append(time.perf_counter())
    return statistics.median(b - a for a, b in itertools.pairwise(marks[2:]))


def step_probe(model: nn.Module, cfg: Config, train: PreparedDataset, world: int) -> Callable[[int], float]:
    """probe(side): the seconds of a synthetic step of this run's model, per-rank batch and optimizer."""
    from lsvr.train.optim import build_optimizer

    return lambda side: synthetic_step_s(
        model, lambda m: build_optimizer(m, cfg.optim), side=side, batch=cfg.train.global_batch // world,
        channels=int(train.shape[2]), classes=len(train.classes), precision=cfg.train.precision,
        channels_last=cfg.train.channels_last,
    )  # fmt: skip


def plan_steps(*, remaining_s: float, step: int, step_s: float, val_s: float, steps_per_epoch: int, cap: int,
               weights: Sequence[float] | None = None, val_from: int = 1) -> int:  # fmt: skip
    """The most steps in all (at least `step`, at most `cap`) whose training from `step` on, plus a
    validation at the end of each epoch from epoch `val_from` on and one at the last step, fit in
    remaining_s. weights[s]: step s's cost as a multiple of step_s (progressive resizing: the
    pixels of its side against those of the timed steps); None: every step costs step_s."""
    done = list(itertools.accumulate(weights[step:cap], initial=0.0)) if weights is not None else None

    def cost(total: int) -> float:
        ends = -(-total // steps_per_epoch)  # epochs ended (the last one perhaps cut short) at `total`
        validations = max(ends - max(step // steps_per_epoch, val_from - 1), int(total > step))
        steps = done[total - step] if done is not None else total - step
        return steps * step_s + validations * val_s

    low, high = step, cap
    while low < high:  # cost grows with the total: the largest that fits
        mid = (low + high + 1) // 2
        low, high = (mid, high) if cost(mid) <= remaining_s else (low, mid - 1)
    return low


class TimeBudget:
    """Times this process's first steps and fixes the run's total steps (`after_step`, every rank)."""

    def __init__(self, seconds: float, *, started: float, env: Distributed, val_images: int, global_batch: int,
                 steps_per_epoch: int, cap: int, side_at: Callable[[int], int] | None = None,
                 val_side: int = 0, val_views: int = 1, val_from: int = 1,
                 probe: Callable[[int], float] | None = None) -> None:  # fmt: skip
        """side_at(step): the training side of a step where it changes (progressive resizing),
        val_side the side validation scores at, val_views the views of each image (a mirror: 2),
        val_from the first epoch validated (train.val_from), probe(side): the seconds of a
        synthetic step at a side (synthetic_step_s); None: a step's cost is taken as its pixels'."""
        self.seconds, self.started, self.env = seconds, started, env
        self.val_images, self.global_batch = val_images, global_batch
        self.steps_per_epoch, self.cap = steps_per_epoch, cap
        self.side_at, self.val_side, self.val_views, self.val_from = side_at, val_side, val_views, val_from
        self.probe = probe
        self.marks: list[float] = []  # perf_counter after each step of this process

    def check_start(self) -> None:
        """Refuse a budget already spent before the first step (loading the data, say): rank 0's
        clock decides, so that every rank refuses or none does."""
        spent = time.time() - self.started
        if self._from_rank0(int(spent >= self.seconds)):
            raise InputError(f"config: train.time_budget_s={self.seconds:g} is spent before the first step (the"
                             f" process started {spent:.1f} s ago)")  # fmt: skip

    def after_step(self, step: int, *, log: MetricsLog, say: Callable[[str], None]) -> int | None:
        """Called after every step; the total steps at the step they are fixed, None before and after."""
        if len(self.marks) > WARMUP_STEPS + TIMED_STEPS:
            return None
        if self.env.device.type == "cuda":
            torch.cuda.synchronize(self.env.device)  # the step's kernels done, not just queued
        self.marks.append(time.perf_counter())
        if len(self.marks) <= WARMUP_STEPS + TIMED_STEPS:
            return None
        # The median interval: an epoch's validation or a save between two steps is not a step's cost.
        timed = self.marks[WARMUP_STEPS:]
        step_s = statistics.median(b - a for a, b in itertools.pairwise(timed))
        val_s = self.val_images * step_s / self.global_batch * FORWARD_SHARE * self.val_views
        weights = None
        if self.side_at is not None:  # each side's step scaled from the timed steps' side
            cost = self._side_costs(timed=self.side_at(step - TIMED_STEPS // 2))
            weights = [cost(self.side_at(s)) for s in range(self.cap)]
            val_s *= cost(self.val_side or self.side_at(self.cap - 1))
        spent = time.time() - self.started
        total = plan_steps(remaining_s=self.seconds - spent, step=step, step_s=step_s, val_s=val_s,
                           steps_per_epoch=self.steps_per_epoch, cap=self.cap, weights=weights,
                           val_from=self.val_from)  # fmt: skip
        # No budget shorter than a step gets here: check_start refused one spent before the first
        # step, and the time spent includes the timed steps. One spent during them ends the run now.
        total = self._from_rank0(total)
        log.write("budget", step=step, total_steps=total, budget_s=self.seconds, spent_s=round(spent, 2),
                  step_s=round(step_s, 4), val_s=round(val_s, 3))  # fmt: skip
        say(f"lsvr train: train.time_budget_s={self.seconds:g}: {total} steps in all ({step_s * 1000:.0f} ms a"
            f" step, {val_s:.1f} s a validation, {spent:.1f} s spent at step {step})")  # fmt: skip
        return total

    def _side_costs(self, *, timed: int) -> Callable[[int], float]:
        """A step's cost at each side as a multiple of one at the timed side: measured by the
        probe at every side the run trains or validates at, else its pixels against the timed
        side's. Pixels misprice small sides: in configs/fashion_mnist_best.yaml's runs a 16 px
        step took 140 ms and a 28 px one 270 ms, 0.52 of it, not (16/28)^2 = 0.33."""
        if self.probe is None:
            return lambda side: side**2 / timed**2
        sides = {self.side_at(s) for s in range(self.cap)} | {timed, self.val_side or self.side_at(self.cap - 1)}
        seconds = {side: self.probe(side) for side in sorted(sides)}
        return lambda side: seconds[side] / seconds[timed]

    def _from_rank0(self, value: int) -> int:
        """Rank 0's value on every rank (each rank timed its own steps; rank 0's count is the run's)."""
        if self.env.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.env.device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())
