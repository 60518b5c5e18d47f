"""Faults on purpose, for the tests that show a failure is handled (the `debug` config section).

Two kinds of points, each named:
- a step fault (`debug.fault=nan|die|hang`) strikes rank `debug.rank` after its forward and
  backward of step `debug.step` (1-based): a NaN loss, a kill -9, or a hang inside the step;
- `debug.fault=kill_save` kills the process (as kill -9 would) at `debug.point` of the first
  checkpoint save from step `debug.step` on: mid-write, before-fsync, before-rename (of the
  step file), before-latest (the step file whole, `latest` not yet moved) or during-prune.

Faults strike a run's first attempt only: a torchrun restart (TORCHELASTIC_RESTART_COUNT > 0)
is armed with none, so the restarted run shows the recovery. A run without `debug` keys
carries a disarmed `Faults()` whose checks are a comparison each.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import torch

from lsvr.config import KILL_POINTS, DebugConfig

STEP_FAULTS = ("nan", "die", "hang")


@dataclass(frozen=True)
class Faults:
    """The armed fault, if any: `Faults.arm(cfg.debug, attempt=...)` once per run."""

    kind: str = "none"  # none, nan, die, hang, kill_save
    rank: int = 0
    step: int = 1
    point: str = KILL_POINTS[0]

    @classmethod
    def arm(cls, debug: DebugConfig, *, attempt: int) -> Faults:
        """The configured fault on attempt 0, none on a restart."""
        if attempt > 0 or debug.fault == "none":
            return cls()
        return cls(kind=debug.fault, rank=debug.rank, step=debug.step, point=debug.point)

    def at_step(self, loss: torch.Tensor, *, rank: int, step: int) -> torch.Tensor:
        """After step `step`'s backward (1-based): the loss, or the fault when it strikes here."""
        if self.kind not in STEP_FAULTS or (rank, step) != (self.rank, self.step):
            return loss
        if self.kind == "nan":
            return loss * float("nan")
        if self.kind == "die":
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup, no goodbye to the peers
        time.sleep(10**6)  # hang: stuck inside the step
        return loss

    def at_save(self, point: str, *, step: int) -> None:
        """At a named point of the save of step `step`: die there when kill_save strikes it."""
        if self.kind == "kill_save" and point == self.point and step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
