"""Preemption: SIGTERM or SIGINT asks training to stop after the current step, with a
checkpoint; a second signal ends the process at once.

The handler only sets a flag: a worker blocked in a collective is never made to wait on
more collectives by it. The flag is summed over the ranks with the step's own check, so
every rank stops at the same step whichever of them was signalled.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption:
    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:  # the second signal: no checkpoint, exit now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = name
        print(f"\nlsvr train: {name}: stopping after this step, with a checkpoint (again to stop at once)",
              file=sys.stderr)  # fmt: skip

    def __enter__(self) -> Preemption:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
