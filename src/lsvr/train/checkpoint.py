"""Checkpoints written: atomic save, keep the newest N and the best.

One owner, `Checkpointer` (the folder, the keep policy, `best` and `latest`); what a file
holds is a `CheckpointRecord` (lsvr.runs.record), read back by lsvr.runs.checkpoints, which
holds the layout and the lookups. A save writes a temp file, fsyncs it and renames it into place, then
updates the pointers the same way, and only then deletes old files. Loading always uses
weights_only=True: a checkpoint holds tensors, numbers, strings, lists and dicts only.

A kill at any point leaves `latest` naming a whole file; a temp file it leaves behind is
removed at the next start (`clean`). A save that fails (a full disk) removes its temp file
and raises SaveError; the previous checkpoint stays as it was.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from lsvr.errors import InputError
from lsvr.folders import write_atomic
from lsvr.runs.checkpoints import best, find, load_step, steps
from lsvr.runs.record import CheckpointRecord
from lsvr.train.faults import Faults


class SaveError(RuntimeError):
    """A checkpoint could not be written (the disk is full, say); the previous one is intact."""


def _write(path: Path, data: bytes, at: Callable[[str], None] | None = None) -> None:
    try:
        write_atomic(path, data, at=at)
    except OSError as exc:
        raise SaveError(f"{path}: could not be written ({exc.strerror or exc})") from None


def clean(folder: Path) -> list[Path]:
    """Remove the temp files a killed save left; returns them."""
    left = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in left:
        path.unlink(missing_ok=True)
    return left


def _set_aside_broken(folder: Path, *, after: Path | None) -> None:
    """Rename step files past `after` (None: every one) that do not load to NAME.corrupt: a
    resume skipped them, and they must never count as the newest checkpoint again, nor as one
    of the `keep` newest."""
    for path in steps(folder):
        if after is not None and path.name <= after.name:
            continue
        try:
            load_step(path)
        except InputError as exc:
            aside, n = path.with_name(path.name + ".corrupt"), 1
            while aside.exists():  # an earlier one of the same step is kept too
                aside, n = path.with_name(f"{path.name}.corrupt.{n}"), n + 1
            os.replace(path, aside)
            print(f"lsvr: warning: {exc}; moved aside as {aside.name}", file=sys.stderr)


class Checkpointer:
    """RUN/checkpoints: `save` writes a record and applies the keep policy; `clean` removes
    what a killed save left. faults: the named points a test kills a save at (debug.*)."""

    def __init__(self, folder: Path, *, keep: int, faults: Faults | None = None) -> None:
        self.folder, self.keep, self.faults = Path(folder), keep, faults or Faults()
        self.checked = False  # every step file there loaded once (at this process's first save)

    def clean(self) -> list[Path]:
        """Remove the temp files a killed save left; returns them."""
        return clean(self.folder)

    def latest(self) -> Path | None:
        """The file `latest` names, else the newest step file (find)."""
        return find(self.folder)

    def best(self) -> tuple[Path | None, float | None]:
        """The step file `best` names and its top-1, or Nones."""
        return best(self.folder)

    def save(self, record: CheckpointRecord, *, top1: float | None = None) -> Path:
        """Write step-<8 digits>.pt for record.step, point `latest` at it (and `best` when its
        top1 beats the best so far), then prune to the newest `keep` plus the best. A step file
        that does not load is moved aside as *.corrupt: every one at this process's first save
        (one a resume skipped, before this save could write over it), later ones at every save;
        `keep` counts files that load.

        Only files up to this step are pruned: a later step file is one a resume skipped (moved
        aside as *.corrupt when it does not load) or another run's, never this run's to delete,
        so the checkpoint resumed from stays until newer ones replace it."""
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{record.step:08d}.pt"
        if not self.checked:
            _set_aside_broken(folder, after=None)
            self.checked = True
        buffer = io.BytesIO()
        torch.save(record.to_dict(), buffer)

        def at(point: str) -> None:
            self.faults.at_save(point, step=record.step)

        _write(path, buffer.getvalue(), at)
        at("before-latest")
        _write(folder / "latest", path.name.encode() + b"\n")
        kept, kept_top1 = best(folder)
        if top1 is not None and (kept is None or kept_top1 is None or top1 > kept_top1):
            _write(folder / "best", f"{path.name}\n{top1}\n".encode())
            kept = path
        _set_aside_broken(folder, after=path)
        done = [p for p in steps(folder) if p.name <= path.name]
        for old in done[: -self.keep]:
            if old != kept and old != path:
                old.unlink()
                at("during-prune")
        return path
