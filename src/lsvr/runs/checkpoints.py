"""A run's checkpoint files, read: find the newest that loads, follow `latest`/`best`, load a
file safely as its CheckpointRecord. Writing them is training's (lsvr.train.checkpoint).

Layout: RUN/checkpoints/step-00001234.pt (the step, 8 digits), plus pointer files `latest`
(a file name) and `best` (a file name, then its top-1); a pointer may only name a step file of
its own folder. Loading always uses weights_only=True: a checkpoint holds tensors, numbers,
strings, lists and dicts only, and comes back on the CPU.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from lsvr.errors import InputError
from lsvr.runs.record import CheckpointRecord
from lsvr.safe_load import safe_load

STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


def _steps(folder: Path) -> list[Path]:
    """The folder's step files, oldest first (the 8-digit step sorts as text)."""
    return sorted(p for p in folder.iterdir() if STEP_FILE.match(p.name)) if folder.is_dir() else []


def _pointer_lines(folder: Path, name: str) -> tuple[list[str], str | None]:
    """The lines of a pointer file ([] when absent), or why they cannot be read."""
    path = folder / name
    if path.is_symlink():
        # lsvr writes pointers as plain files; a link may lead out of the folder, and what it
        # leads to is neither read nor echoed (a warning once printed a line of /etc/passwd).
        return [], f"is a link (to {_short(os.readlink(path))}), not a pointer file lsvr writes"
    if not path.is_file():
        return [], None
    try:
        with open(path, "rb") as f:
            head = f.read(256)  # a name and a number; more is not a pointer
        return head.decode("ascii").splitlines(), None
    except UnicodeDecodeError:
        return [], "holds bytes that are not a file name"
    except OSError as exc:
        return [], f"cannot be read ({exc.strerror or exc})"


def _short(text: str) -> str:
    """A name for a warning: its repr (no control characters reach the terminal), cut to 40."""
    return repr(text[:40]) + ("..." if len(text) > 40 else "")


def _pointer(folder: Path, name: str) -> tuple[Path | None, str | None]:
    """The step file a pointer (`latest`, `best`) names on its first line, or None and why.

    Only a step file of the pointer's own folder counts: a pointer naming another path
    (`/etc/passwd`, `../x.pt`) is never followed."""
    lines, problem = _pointer_lines(folder, name)
    if problem or not lines:
        return None, problem
    first = lines[0].strip()
    if not STEP_FILE.match(first):
        return None, f"names {_short(first)}, not a step-NNNNNNNN.pt file of its folder"
    target = folder / first
    return (target, None) if target.is_file() else (None, f"names {first}, which is not there")


def _latest(folder: Path) -> Path | None:
    """The file `latest` names; when it names none, the newest step file (a warning says so)."""
    if not folder.is_dir():
        return None
    found, problem = _pointer(folder, "latest")
    if found is not None:
        return found
    steps = _steps(folder)
    if problem:
        instead = f"using the newest step file {steps[-1].name}" if steps else "no step file to use instead"
        print(f"lsvr: warning: {folder / 'latest'} {problem}; {instead}", file=sys.stderr)
    return steps[-1] if steps else None


def best(folder: Path) -> tuple[Path | None, float | None]:
    """The best checkpoint and its top-1 (the two lines of `best`), or Nones."""
    found, _ = _pointer(folder, "best")
    lines, _ = _pointer_lines(folder, "best")
    try:
        top1 = float(lines[1]) if len(lines) > 1 else None
    except ValueError:
        top1 = None
    return (found, top1) if found is not None and top1 is not None else (None, None)


def load(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint file's plain contents, loaded safely onto the CPU; anything else is an
    InputError naming the file. Readers use `read`, which types them."""
    state = safe_load(path, what="checkpoint", map_location="cpu", mmap=mmap)
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a checkpoint (holds a {type(state).__name__})")
    return state


def read(path: Path, *, mmap: bool = False) -> CheckpointRecord:
    """A checkpoint file as its record (any format this lsvr reads), on the CPU."""
    return CheckpointRecord.from_dict(load(path, mmap=mmap), where=path)


def find_valid(target: str | Path) -> Path | None:
    """Like find, but a newest checkpoint that does not load (truncated, zero bytes), or whose
    name says another step than it holds, is skipped for the newest one that does, with a
    warning naming it."""
    target = Path(target)
    if target.is_file():
        return follow_pointer(target)
    for path in candidates(target):
        try:
            load_step(path)
            return path
        except InputError as exc:
            print(f"lsvr: warning: skipping the checkpoint {exc}", file=sys.stderr)
    return None


def candidates(target: str | Path) -> list[Path]:
    """A run or checkpoints folder's step files in the order a resume tries them: the one
    `find` picks, then the others, newest first."""
    target = Path(target)
    folder = target / "checkpoints" if (target / "checkpoints").is_dir() else target
    first = find(target)
    return ([first] if first else []) + [p for p in _steps(folder)[::-1] if p != first]


def steps(folder: Path) -> list[Path]:
    """The step files of a checkpoints folder, oldest first."""
    return _steps(Path(folder))


def load_step(path: Path) -> CheckpointRecord:
    """A step file's record (memory-mapped), or an InputError when it does not load or holds
    another step than its name says: a file copied in under a name it does not fit."""
    record = read(path, mmap=path.stat().st_size > 0)
    named = STEP_FILE.match(path.name)
    if named and record.step != int(named.group(1)):
        raise InputError(f"{path}: named for step {int(named.group(1))} but holds step {record.step}")
    return record


def none_found(target: Path, *, expected: str) -> str:
    """Why find_valid found nothing, as an error line naming target: no such path, a folder
    without step files (both with what was expected), or step files of which none loads (the
    newest and why)."""
    if not target.exists():
        return f"{target}: no such file or folder (expected {expected})"
    folder = target / "checkpoints" if (target / "checkpoints").is_dir() else target
    steps = _steps(folder)
    if not steps:
        return f"{target}: no checkpoint there (no step-NNNNNNNN.pt file in {folder}; expected {expected})"
    try:
        load(steps[-1], mmap=steps[-1].stat().st_size > 0)
        why = "it loads now"  # written since find_valid looked
    except InputError as exc:
        why = str(exc).removeprefix(f"{steps[-1]}: ")
    return f"{target}: holds {len(steps)} checkpoint file(s) but none loads (the newest, {steps[-1].name}: {why})"


def find(target: str | Path) -> Path | None:
    """A checkpoint file from a file path, a run folder or a checkpoints folder: the file its
    `latest` names, or the newest step file when `latest` is missing or names no step file."""
    target = Path(target)
    if target.is_file():
        return follow_pointer(target)
    for folder in (target / "checkpoints", target):
        found = _latest(folder)
        if found is not None:
            return found
    return None


POINTERS = ("latest", "best")


def is_pointer(path: Path) -> bool:
    """A `latest` or `best` file of a checkpoints folder (one beside step files)."""
    path = Path(path)
    return path.name in POINTERS and (path.is_file() or path.is_symlink()) and bool(_steps(path.parent))


def follow_pointer(path: Path) -> Path:
    """The step file a `latest`/`best` pointer names (RUN/checkpoints/best); any other path as
    it is. A pointer is followed only to a step file of its own folder, as find does."""
    path = Path(path)
    if not is_pointer(path):
        return path
    found, problem = _pointer(path.parent, path.name)
    if found is None:
        raise InputError(f"{path}: a checkpoint pointer that {problem or 'is empty'}")
    return found
