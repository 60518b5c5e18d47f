"""train.time_budget_s: the step count that ends a run near a wall-clock budget.

Rank 0 times the first steps of the process (after a few warm-up steps), adds an estimate of
each validation's cost and the time spent since the process started, and fixes the total step
count from them; later it times the steps at the ramp's last side (or, with no ramp, the next
steps) over a longer window and fixes the count once more. Every rank receives each count at the
same step, and the checkpoint keeps them (RunState.budget_steps, budget_replan), so the schedule
stays a function of the step, a resume keeps the counts without timing anything again, and its
result is the same as a run that was never stopped.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from lsvr.errors import InputError
from lsvr.preprocess import Preprocess
from lsvr.train.metrics import MetricsLog
from lsvr.train.parallel import Distributed

IMPORTED_AT = time.time()  # where /proc is not there, the process's start is taken as lsvr's import
WARMUP_STEPS = 3  # the first steps pay for allocation, the loader filling up, a compile: not timed
TIMED_STEPS = 6
AGAIN_STEPS = 50  # the second plan's: the steps most of the run is made of, timed over a longer window
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


def first_at_last_side(side_at: Callable[[int], int], cap: int) -> int:
    """The first step (of 0..cap-1) at the side of step cap-1: sides never decrease, so a
    bisection finds it (a 90-epoch ImageNet run has 450,000 steps)."""
    low, high, last = 0, cap - 1, side_at(cap - 1)
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if side_at(mid) < last else (low, mid)
    return low


class StepTimes:
    """The marks of one timing window: WARMUP_STEPS intervals not timed, then `timed` ones."""

    def __init__(self, timed: int) -> None:
        self.timed, self.marks = timed, []  # perf_counter after each step of the window

    def add(self, now: float) -> float | None:
        """Mark a step's end; the median timed interval once the window is full, else None. The
        median: an epoch's validation or a save between two steps is not a step's cost."""
        self.marks.append(now)
        if len(self.marks) <= WARMUP_STEPS + self.timed:
            return None
        return statistics.median(b - a for a, b in itertools.pairwise(self.marks[WARMUP_STEPS:]))


class TimeBudget:
    """Fixes the run's total steps from this process's first steps, then fixes them again, once,
    from the steps at the last side of the ramp (`after_step`, every rank).

    The first plan prices a step of another side by its pixels, which errs on the short side (a
    small side's step is not all arithmetic: quicknet's 28 px step took 1.9 of its 16 px one,
    not (28/16)^2 = 3.06), and six steps are few (107-143 ms between seeds). The second times
    AGAIN_STEPS steps at the side most of the run trains at (with no ramp: the steps after the
    first plan) and plans the rest from them; the schedule's tail is stretched to the new total
    (Schedule's replan), so the lr does not jump."""

    def __init__(self, seconds: float, *, started: float, env: Distributed, val_images: int, global_batch: int,
                 steps_per_epoch: int, cap: int, side_at: Callable[[int], int] | None = None, val_side: int = 0,
                 val_views: int = 1, val_from: int = 1, fixed: int | None = None) -> None:  # fmt: skip
        """side_at(step): the training side of a step where it changes (progressive resizing,
        never decreasing), val_side the side validation scores at,
        val_views the views of each image (a mirror: 2), val_from the first epoch validated
        (train.val_from); fixed: the total an earlier process's first plan fixed (a resume),
        which leaves only the second plan to make."""
        self.seconds, self.started, self.env = seconds, started, env
        self.val_images, self.global_batch = val_images, global_batch
        self.steps_per_epoch, self.cap = steps_per_epoch, cap
        self.side_at, self.val_side, self.val_views, self.val_from = side_at, val_side, val_views, val_from
        self.total, self.last_side_from = fixed, first_at_last_side(side_at, cap) if side_at is not None else 0
        self.first, self.again = StepTimes(TIMED_STEPS), StepTimes(AGAIN_STEPS)
        self.done = False  # both plans made

    def check_start(self) -> None:
        """Refuse a budget already spent before the first step (loading the data, say): rank 0's
        clock decides, so that every rank refuses or none does."""
        spent = time.time() - self.started
        if self._from_rank0(int(spent >= self.seconds)):
            raise InputError(f"config: train.time_budget_s={self.seconds:g} is spent before the first step (the"
                             f" process started {spent:.1f} s ago)")  # fmt: skip

    def after_step(self, step: int, *, log: MetricsLog, say: Callable[[str], None]) -> int | None:
        """Called after every step; the total steps at each step they are fixed (the first plan,
        then the second), None at the others."""
        if self.done:
            return None
        first = self.total is None
        if not first and step < self.last_side_from:
            return None
        step_s = (self.first if first else self.again).add(self._now())
        if step_s is None:
            return None
        val_s = self.val_images * step_s / self.global_batch * FORWARD_SHARE * self.val_views
        weights = None
        if self.side_at is not None:  # a step's cost grows with its pixels: scaled from the timed steps' side
            timed_px = self.side_at(step - (TIMED_STEPS // 2 if first else 1)) ** 2
            if first:
                weights = [self.side_at(s) ** 2 / timed_px for s in range(self.cap)]
            val_s *= (self.val_side or self.side_at(self.cap - 1)) ** 2 / timed_px
        spent = time.time() - self.started
        total = plan_steps(remaining_s=self.seconds - spent, step=step, step_s=step_s, val_s=val_s,
                           steps_per_epoch=self.steps_per_epoch, cap=self.cap, weights=weights,
                           val_from=self.val_from)  # fmt: skip
        # No budget shorter than a step gets here: check_start refused one spent before the first
        # step, and the time spent includes the timed steps. One spent during them ends the run now.
        total = self._from_rank0(total)
        self.done = not first or total <= max(step, self.last_side_from)  # no steps left to time again
        self.total = total
        plan = 1 if first else 2
        log.write("budget", step=step, total_steps=total, budget_s=self.seconds, spent_s=round(spent, 2),
                  step_s=round(step_s, 4), val_s=round(val_s, 3), plan=plan)  # fmt: skip
        again = "" if first else f" (timed again over {AGAIN_STEPS} steps)"
        say(f"lsvr train: train.time_budget_s={self.seconds:g}: {total} steps in all{again} ({step_s * 1000:.0f} ms"
            f" a step, {val_s:.1f} s a validation, {spent:.1f} s spent at step {step})")  # fmt: skip
        return total

    def _now(self) -> float:
        if self.env.device.type == "cuda":
            torch.cuda.synchronize(self.env.device)  # the step's kernels done, not just queued
        return time.perf_counter()

    def _from_rank0(self, value: int) -> int:
        """Rank 0's value on every rank (each rank timed its own steps; rank 0's count is the run's)."""
        if self.env.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.env.device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())
