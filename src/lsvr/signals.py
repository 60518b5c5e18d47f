"""Preemption: SIGTERM, SIGINT or SIGUSR1 asks training to stop after the current step, with a
checkpoint; a second SIGTERM or SIGINT ends the process at once. SIGUSR1 is SLURM's warning
before a time limit or preemption (`#SBATCH --signal=USR1@120`): it may reach a worker twice
(from SLURM and forwarded by torchrun), so a repeat never escalates. Before the loop can save
(imports, data checks), SIGTERM or SIGUSR1 ends the start-up with one line and status 143
(`start_up_stop`): the start-up handler only notes the signal, and the start-up acts on it at
safe points (`check_start_up`), the last of them Preemption's own start, so no signal falls
between the two handlers. A handler that raised instead ran inside whatever was executing, a
C extension's import included, and broke it (TRAPS.md: "cannot load module more than once").

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


_noted: list[int] = []  # SIGTERM and SIGUSR1 received during the start-up; only _note writes it


def _note(signum: int, frame: FrameType | None) -> None:
    _noted.append(signum)  # nothing else: this runs between any two bytecodes, inside an import too


def watch_start_up() -> None:
    """From here on SIGTERM and SIGUSR1 are noted for `check_start_up`, not acted on. The cli
    calls it before its own imports for `lsvr train`: a signal before it ends the process with
    no word (the status a shell shows is 143 all the same)."""
    if threading.current_thread() is threading.main_thread():
        for signum in START_UP:
            signal.signal(signum, _note)


def check_start_up() -> None:
    """A safe point of the start-up: StartUpStop (the cli says so in one line, status 143)
    where SIGTERM or SIGUSR1 came since the start-up began."""
    if _noted:
        raise StartUpStop


@contextlib.contextmanager
def start_up_stop(*, enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGUSR1 are noted, and `check_start_up` raises StartUpStop
    for them; Preemption takes over from it."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _note) for signum in START_UP}
    try:
        yield
    finally:
        _noted.clear()
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is _note else handler)


def _say_now(text: str) -> None:
    """One write to stderr's file, past Python's buffer: a print from a handler that lands inside
    another write to sys.stderr (a progress bar's) raises `reentrant call`."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a stderr with no file (pytest's capsys)
        print(text, end="", file=sys.stderr)
        return
    os.write(fd, text.encode())  # no flush of sys.stderr first: that is the reentrant call


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
        _say_now(f"\nlsvr train: {name}: stopping after this step, with a checkpoint ({again})\n")

    def __enter__(self) -> Preemption:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        if _noted:  # noted by the start-up's handler before this one took over: nothing trained yet
            self.__exit__()
            raise StartUpStop
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            # past the loop, start-up's "nothing to save" would be untrue: the default ends the process
            signal.signal(signum, signal.SIG_DFL if handler is _note else handler)
        if self.requeued:  # saved and requeued: this process ends with status 0 whatever SLURM sends now
            for signum in SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
