"""Preemption: SIGTERM, SIGINT or SIGUSR1 asks training to stop after the current step, with a
checkpoint; a second SIGTERM or SIGINT ends the process at once. SIGUSR1 is SLURM's warning
before a time limit or preemption (`#SBATCH --signal=USR1@120`): it may reach a worker twice
(from SLURM and forwarded by torchrun), so a repeat never escalates. Before the loop can save
(imports, data checks), SIGTERM or SIGUSR1 ends the start-up with one line and status 143
(`start_up_stop`).

The handler only sets a flag: a worker blocked in a collective is never made to wait on
more collectives by it. The flag is summed over the ranks with the step's own check, so
every rank stops at the same step whichever of them was signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
START_UP = (signal.SIGTERM, signal.SIGUSR1)
STOPPED_DURING_START_UP = 128 + signal.SIGTERM  # the status a shell reports for a SIGTERM: 143


class StartUpStop(BaseException):
    """SIGTERM arrived before training began: nothing was trained, so nothing is saved."""


def _raise_start_up_stop(signum: int, frame: FrameType | None) -> None:
    raise StartUpStop


@contextlib.contextmanager
def start_up_stop(*, enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM raises StartUpStop (the CLI says so in one line) instead of
    killing the process with no word; Preemption replaces it once the loop can save."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_start_up_stop) for signum in START_UP}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Preemption:
    def __init__(self) -> None:
        self.requested: str | None = None
        self.requeued = False  # slurm.requeue: the job is back in the queue; SLURM's SIGTERM that ends it is ignored
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None and signum == signal.SIGUSR1:
            return  # SLURM's warning again (or forwarded): the stop is under way
        if self.requested is not None:  # the second signal: no checkpoint, exit now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = name
        again = "SIGTERM or Ctrl-C to stop at once" if signum == signal.SIGUSR1 else "again to stop at once"
        print(f"\nlsvr train: {name}: stopping after this step, with a checkpoint ({again})", file=sys.stderr)

    def __enter__(self) -> Preemption:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            # past the loop, start-up's "nothing to save" would be untrue: the default ends the process
            signal.signal(signum, signal.SIG_DFL if handler is _raise_start_up_stop else handler)
        if self.requeued:  # saved and requeued: this process ends with status 0 whatever SLURM sends now
            for signum in SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
