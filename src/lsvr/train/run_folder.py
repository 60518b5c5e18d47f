"""The run folder (`lsvr train --out RUN`): who may write into it, and what.

A run is named by an id drawn at its fresh start; the id is written into its `start`
lines of metrics.jsonl and into every checkpoint (`state["run_id"]`). A folder holds the
run of its checkpoints. `--resume` continues that run (`--resume auto`, a checkpoint
inside the folder, or one carrying the folder's run id); a checkpoint of another run
starts a new run from it, and only in a folder that holds no checkpoints: two runs'
checkpoints never share a folder.

Rank 0 holds `RUN/.lock` (lsvr.folders.FolderLock: flock plus `pid@host`) from before the
first file is read until the run ends, so a second `lsvr train` into the same folder is
refused before it writes anything; the kernel frees the lock of a killed run.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsvr.errors import InputError
from lsvr.folders import FolderLock, check_writable
from lsvr.train import checkpoint
from lsvr.train.metrics import WriteError

LOCK_NAME = ".lock"


@dataclass
class Start:
    """How a run begins: fresh (no resume_from), continuing its own checkpoint, or a new
    run from another run's checkpoint (`forked`)."""

    run_id: str
    resume_from: Path | None = None
    state: dict[str, Any] | None = None  # the checkpoint, memory-mapped
    forked: bool = False
    note: str | None = None  # one line for stderr (rank 0)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class RunFolder:
    """`with RunFolder(out, main=...) as folder: start = folder.start(resume)`; `main`: this
    process writes the folder (rank 0) and so holds its lock."""

    def __init__(self, out: Path, *, main: bool) -> None:
        self.out, self.main = Path(out), main
        self._lock = FolderLock(self.out / LOCK_NAME, folder=self.out, what="run folder")
        self._created = False

    def open(self) -> RunFolder:
        """Refuse an unwritable folder, then take the lock (rank 0); nothing is read before."""
        check_writable(self.out, what="run folder")
        if not self.main:
            return self
        self._created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except OSError as exc:  # a full disk while naming the holder
            self._remove_if_empty()
            raise WriteError(f"{self.out / LOCK_NAME}: could not be written ({exc.strerror or exc})") from None
        except InputError:
            self._remove_if_empty()
            raise
        return self

    def close(self) -> None:
        self._lock.release()
        self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        """A folder this run created and never wrote into (a refused start) is not left behind."""
        if self._created:
            with contextlib.suppress(OSError):  # it holds files: keep it
                self.out.rmdir()

    def __enter__(self) -> RunFolder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def holds_checkpoints(self) -> bool:
        """A checkpoint the folder points at (checkpoint.find): a save killed before its first
        `latest` left nothing to continue."""
        return checkpoint.find(self.out) is not None

    def start(self, resume: str | None) -> Start:
        """Decide how the run begins; an InputError where it would overwrite or mix a run."""
        if resume is None:
            if self.holds_checkpoints():
                raise InputError(
                    f"{self.out}: already holds checkpoints; pass --resume auto to continue, or another --out"
                )
            return Start(new_run_id())
        if resume == "auto":
            found = checkpoint.find_valid(self.out)
            if found is None:
                return Start(new_run_id())  # nothing saved yet (a restart before the first save)
            state = checkpoint.load(found, mmap=True)
            return Start(state.get("run_id") or new_run_id(), found, state)
        found = checkpoint.find_valid(resume)
        if found is None:
            raise InputError(f"{resume}: no checkpoint there (expected a .pt file or a run folder)")
        state = checkpoint.load(found, mmap=True)
        theirs = state.get("run_id")
        if self._inside(found):
            return Start(theirs or new_run_id(), found, state)
        if self.holds_checkpoints():
            here = checkpoint.find_valid(self.out)
            ours = checkpoint.load(here, mmap=True).get("run_id") if here else None
            if theirs and theirs == ours:  # a copy of this folder's run
                return Start(theirs, found, state)
            raise InputError(
                f"{self.out}: holds the checkpoints of another run (run {ours or 'without id'}) than {found}"
                f" (run {theirs or 'without id'}); resume from {found} into an empty --out, or continue this"
                " folder's run with --resume auto"
            )
        run_id = new_run_id()
        note = (f"lsvr train: {found} is a checkpoint of another run (run {theirs or 'without id'}): starting"
                f" a new run {run_id} in {self.out} from its weights at step {state.get('step')}")  # fmt: skip
        return Start(run_id, found, state, forked=True, note=note)

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.out.resolve())
