"""The run folder (`lsvr train --out RUN`): who may write into it, and what.

A run is named by an id drawn at its fresh start; the id is written into its `start`
lines of metrics.jsonl and into every checkpoint (`CheckpointRecord.run_id`). A folder holds the
run of its checkpoints. `--resume` continues that run (`--resume auto`, a checkpoint
inside the folder, or one carrying the folder's run id); a checkpoint of another run
starts a new run from it, and only in a folder that holds no checkpoints: two runs'
checkpoints never share a folder. A fresh start into the records of a run that saved no
checkpoint (one that failed at its first step) moves them into RUN/failed-start-N/ first.

A folder lsvr did not write is never written into: `--out` may be new, empty or a run
folder, and a run folder holds only what lsvr writes there (RUN_ENTRIES). Nothing is
written before every check that can refuse the start has passed (`record_start`).

Rank 0 holds `RUN/.lock` (lsvr.folders.FolderLock: flock plus `pid@host`) from before the
first file is read until the run ends, so a second `lsvr train` into the same folder is
refused before it writes anything; the kernel frees the lock of a killed run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from lsvr.config import Config
from lsvr.config_file import RENAMED
from lsvr.errors import InputError
from lsvr.folders import FolderLock, check_writable, write_atomic
from lsvr.runs import checkpoints
from lsvr.runs.record import CheckpointRecord
from lsvr.train import checkpoint
from lsvr.train.metrics import MetricsLog, WriteError

LOCK_NAME = ".lock"
# What lsvr writes in a run folder: train (config, metrics, checkpoints, lock; tb/ for
# train.tensorboard, profile/ for --profile), `lsvr plot`
# (plot.png, or any --out image: _image_file), the demo (test.json from `lsvr eval --json`,
# samples/ for `lsvr predict`), and `lsvr export` (*.safetensors); `.NAME.tmp` is a
# config.yaml write a kill interrupted.
RUN_ENTRIES = {"config.yaml", "metrics.jsonl", "checkpoints", "plot.png", LOCK_NAME, "test.json", "samples",
               ".config.yaml.tmp", "tb", "profile"}  # fmt: skip
RUN_SUFFIXES = (".safetensors",)
# A run that saved no checkpoint (it failed at its first step, say) does not hold the folder:
# a fresh start moves its records into failed-start-N/ (SET_ASIDE) and begins a new run.
SET_ASIDE = ("config.yaml", "metrics.jsonl", "tb", "profile", ".config.yaml.tmp")
SET_ASIDE_NAME = re.compile(r"failed-start-[0-9]+")


@dataclass
class Start:
    """How a run begins: fresh (no resume_from), continuing its own checkpoint, or a new
    run from another run's checkpoint (`forked`)."""

    run_id: str
    resume_from: Path | None = None
    state: CheckpointRecord | None = None  # the checkpoint, memory-mapped
    forked: bool = False
    note: str | None = None  # one line for stderr (rank 0)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class RunFolder:
    """`with RunFolder(out, main=...) as folder: start = folder.start(resume)`; `main`: this
    process writes the folder (rank 0) and so holds its lock; `resuming`: --resume was given
    (a stray file is then to be moved away, not the run left)."""

    def __init__(self, out: Path, *, main: bool, resuming: bool = False) -> None:
        self.out, self.main, self.resuming = Path(out), main, resuming
        self.checkpoints = self.out / "checkpoints"
        self._lock = FolderLock(self.out / LOCK_NAME, folder=self.out, what="run folder")
        self._created: list[Path] = []  # the folders open() made, deepest first
        self._aside: Path | None = None  # where record_start moves a run's records that saved no checkpoint

    def open(self) -> RunFolder:
        """Refuse an unwritable folder, then take the lock (rank 0); nothing is read before."""
        check_writable(self.out, what="run folder")
        check_owned(self.out, resuming=self.resuming)  # read only: a refusal leaves the folder as it was
        if not self.main:
            return self
        self._created = list(itertools.takewhile(lambda p: not p.exists(), (self.out, *self.out.parents)))
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
        """The folders this run created and never wrote into (a refused start), `--out runs/a`'s
        new `runs/` too, are not left behind."""
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # it holds files: keep it, and the folders above it
                return

    def __enter__(self) -> RunFolder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def holds_checkpoints(self) -> bool:
        """A checkpoint the folder points at (checkpoints.find): a save killed before its first
        `latest` left nothing to continue."""
        return checkpoints.find(self.out) is not None

    def start(self, resume: str | None) -> Start:
        """Decide how the run begins; an InputError where it would overwrite or mix a run."""
        if resume is None:
            if self.holds_checkpoints():
                raise InputError(
                    f"{self.out}: already holds checkpoints; pass --resume auto to continue, or another --out"
                )
            run_id = new_run_id()
            if self.holds_records():  # a second run's lines would join the first's in metrics.jsonl
                self._aside = self._aside_folder()
                note = (f"lsvr train: {self.out} held run {self.run_id() or 'without id'}, which saved no checkpoint:"
                        f" its records moved to {self._aside}; starting run {run_id}")  # fmt: skip
                return Start(run_id, note=note)
            return Start(run_id)
        if resume == "auto":
            return self._continue()
        found = checkpoints.find_valid(resume)
        if found is None:
            raise InputError(checkpoints.none_found(Path(resume), expected="a .pt file or a run folder"))
        state = checkpoints.read(found, mmap=True)
        theirs = state.run_id
        if self._inside(found):
            return Start(theirs or new_run_id(), found, state)
        if self.holds_checkpoints() or self.holds_records():
            ours = self.run_id()
            if theirs and theirs == ours:  # a copy of this folder's run
                return Start(theirs, found, state)
            what = "checkpoints" if self.holds_checkpoints() else "records (metrics.jsonl)"
            raise InputError(
                f"{self.out}: holds the {what} of another run (run {ours or 'without id'}) than {found}"
                f" (run {theirs or 'without id'}); resume from {found} into an empty --out, or continue this"
                " folder's run with --resume auto"
            )
        run_id = new_run_id()
        note = (f"lsvr train: {found} is a checkpoint of another run (run {theirs or 'without id'}): starting"
                f" a new run {run_id} in {self.out} from its weights at step {state.step}")  # fmt: skip
        return Start(run_id, found, state, forked=True, note=note)

    def holds_records(self) -> bool:
        """metrics.jsonl holds a line (check_owned: each one lsvr's, or a torn prefix of one)."""
        path = self.out / "metrics.jsonl"
        return path.is_file() and any(line.strip() for line in path.read_text(errors="replace").splitlines())

    def run_id(self) -> str | None:
        """The folder's run: the id of the last `start` record of metrics.jsonl, else the one
        most of its loadable checkpoints carry."""
        starts = [r for r in _records(self.out / "metrics.jsonl") if r.get("kind") == "start" and r.get("run_id")]
        if starts:
            return starts[-1]["run_id"]
        ids = Counter()
        for path in checkpoints.steps(self.out / "checkpoints"):
            with contextlib.suppress(InputError):
                ids[checkpoints.load_step(path).run_id] += 1
        ids.pop(None, None)
        return ids.most_common(1)[0][0] if ids else None

    def _continue(self) -> Start:
        """--resume auto: the newest checkpoint that loads, holds the step its name says and
        belongs to this folder's run. Nothing saved yet (a restart before the first save): the
        folder's run started again from step 0 under its id, said on stderr; a new run where the
        folder holds none. Step files, none of them usable: refused, naming each and why."""
        ours, skipped = self.run_id(), []
        for path in checkpoints.candidates(self.out):
            try:
                state = checkpoints.load_step(path)
            except InputError as exc:
                skipped.append(str(exc))
                print(f"lsvr: warning: skipping the checkpoint {exc}", file=sys.stderr)
                continue
            theirs = state.run_id
            if ours and theirs and theirs != ours:
                why = f"{path}: a checkpoint of another run ({theirs}) than this folder's ({ours})"
                skipped.append(why)
                print(f"lsvr: warning: skipping the checkpoint {why}", file=sys.stderr)
                continue
            return Start(theirs or ours or new_run_id(), path, state)
        if skipped:
            raise InputError(
                f"{self.out}: holds checkpoints but none of them can be resumed from ({'; '.join(skipped)});"
                " move them away to start afresh, or resume from another checkpoint with --resume PATH"
            )
        if ours:
            note = f"lsvr train: {self.out} holds no checkpoint of run {ours}: starting that run again from step 0"
            return Start(ours, note=note)
        return Start(new_run_id())

    def _aside_folder(self) -> Path:
        """failed-start-N: the next N of the folder."""
        taken = [int(p.name.rsplit("-", 1)[1]) for p in self.out.iterdir() if SET_ASIDE_NAME.fullmatch(p.name)]
        return self.out / f"failed-start-{max(taken, default=0) + 1}"

    def _set_aside(self) -> list[tuple[Path, Path]]:
        """Move the records of a run that saved no checkpoint into failed-start-N/ (start said
        where); the (from, to) pairs moved."""
        if self._aside is None:
            return []
        self._aside.mkdir()
        moved = []
        for name in SET_ASIDE:
            if (self.out / name).exists():
                (self.out / name).rename(self._aside / name)
                moved.append((self.out / name, self._aside / name))
        return moved

    def record_start(self, config_text: str, write_start: Any) -> None:
        """Write config.yaml, then the `start` record (write_start()): once every check that can
        refuse the run has passed (a run that saved no checkpoint is first moved aside). Where the
        record cannot be written (a full disk), config.yaml and metrics.jsonl are put back as they
        were, so a failed start changes nothing."""
        if not self.writing():  # only the lock's holder writes the folder
            raise RuntimeError(f"{self.out}: written without holding its lock")
        try:
            moved = self._set_aside()
        except OSError as exc:
            raise WriteError(f"{self._aside}: could not be written ({exc.strerror or exc})") from None
        try:
            self._write_start(config_text, write_start)
        except BaseException:
            with contextlib.suppress(OSError):
                for was, now in moved:
                    now.rename(was)
                if self._aside is not None:
                    self._aside.rmdir()
            raise

    def _write_start(self, config_text: str, write_start: Any) -> None:
        config, metrics = self.out / "config.yaml", self.out / "metrics.jsonl"
        old = config.read_bytes() if config.is_file() else None
        size = metrics.stat().st_size if metrics.is_file() else None
        _write_atomic(config, config_text.encode())
        try:
            write_start()
        except BaseException:
            with contextlib.suppress(OSError):
                if old is None:
                    config.unlink()
                else:
                    _write_atomic(config, old)
                if size is None:
                    metrics.unlink(missing_ok=True)
                else:
                    os.truncate(metrics, size)
            raise

    def metrics_log(self) -> MetricsLog:
        """metrics.jsonl, written by the folder's writer (rank 0) alone."""
        return MetricsLog(self.out / "metrics.jsonl", enabled=self.writing())

    def writing(self) -> bool:
        """This process writes the folder: rank 0, holding its lock (taken in open, freed in close)."""
        return self.main and self._lock.held

    def clean_leftovers(self) -> list[Path]:
        """Remove what an interrupted save left in checkpoints/ (checkpoint.clean); the removed paths."""
        return checkpoint.clean(self.checkpoints) if self.writing() else []

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.out.resolve())


def _write_atomic(path: Path, data: bytes) -> None:
    """folders.write_atomic (.NAME.tmp, fsync, rename): a kill leaves the old file or the new
    one, never half; a full disk is a WriteError naming the file."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise WriteError(f"{path}: could not be written ({exc.strerror or exc})") from None


def _records(path: Path) -> list[Any]:
    """The lines of a metrics.jsonl that parse (a torn one, from a killed run, does not)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def check_owned(out: Path, *, resuming: bool = False) -> None:
    """Refuse (InputError naming the folder and the first foreign entry) an --out that holds
    what lsvr does not write in a run folder, or a config.yaml or metrics.jsonl not lsvr's:
    a run must never overwrite or append to a user's files. `resuming` a run this folder
    holds, the advice is to move the stray entry away, not to leave the run. A dangling link
    is refused as prepare refuses it (lsvr.data.output.resolve_out)."""
    if out.is_symlink() and not out.exists():
        raise InputError(f"{out}: a symbolic link to {os.readlink(out)}, which does not exist; lsvr writes through"
                         " a link only to an existing folder: create it or choose another --out")  # fmt: skip
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out}: is a file, not a run folder; choose another --out")
    entries = sorted(os.listdir(out))
    for entry in entries:
        if entry in RUN_ENTRIES or entry.endswith(RUN_SUFFIXES) or SET_ASIDE_NAME.fullmatch(entry):
            continue
        if not _image_file(out / entry):
            if resuming and {"metrics.jsonl", "checkpoints"} & set(entries):
                raise InputError(f"{out}: holds {entry}, which lsvr does not write in a run folder;"
                                 f" move {out / entry} away to continue this run")  # fmt: skip
            raise InputError(f"{out}: not a run folder (it holds {entry}, which lsvr does not write there);"
                             " choose a new or empty --out")  # fmt: skip
    problem = _foreign_config(out / "config.yaml") or _foreign_metrics(out / "metrics.jsonl")
    if problem:
        raise InputError(f"{out}: not a run folder ({problem}); choose a new or empty --out")


def _image_file(path: Path) -> bool:
    """A file `lsvr plot RUN --out RUN/NAME` may have written: its suffix names a format
    lsvr.plot accepts. Looked up only for an entry not otherwise lsvr's (matplotlib is slow
    to import)."""
    if not path.suffix or not path.is_file():
        return False
    from lsvr.plot import image_formats

    return path.suffix.lower().lstrip(".") in image_formats()


def _foreign_config(path: Path) -> str | None:
    if not path.exists():
        return None
    sections = {f.name for f in fields(Config)} | set(RENAMED)  # an earlier lsvr's run folder too
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    if isinstance(data, dict) and data and set(data) <= sections:
        return None
    return f"its config.yaml is not an lsvr config (a mapping of {', '.join(sorted(sections))})"


def _foreign_metrics(path: Path) -> str | None:
    """Every line of lsvr's metrics.jsonl is a JSON object with a "kind", or a torn prefix of
    one (a killed run): it starts with "{"."""
    if not path.exists():
        return None
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = ["?"]
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and "kind" in record
        except json.JSONDecodeError:
            ok = line.startswith("{") or not line.strip()
        if not ok:
            return f'line {n} of its metrics.jsonl is not an lsvr record (a JSON object with a "kind")'
    return None
