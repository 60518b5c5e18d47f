"""Checkpoints: atomic save, keep the newest N and the best, safe load, resume lookup.

Layout: RUN/checkpoints/step-00001234.pt (the step, 8 digits), plus pointer files `latest` and `best` that
hold a file name. A save writes a temp file, fsyncs it and renames it into place, then
updates the pointers the same way, and only then deletes old files. Loading always uses
weights_only=True: a checkpoint holds tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from lsvr.errors import InputError
from lsvr.safe_load import safe_load

STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _pointer(folder: Path, name: str) -> Path | None:
    path = folder / name
    if not path.is_file():
        return None
    target = folder / path.read_text().strip()
    return target if target.is_file() else None


def save(folder: Path, state: dict[str, Any], *, keep: int, top1: float | None = None) -> Path:
    """Write step-<8 digits>.pt for state["step"], point `latest` at it (and `best` when its
    top1 beats the best so far), then prune to the newest `keep` plus the best."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state['step']:08d}.pt"
    _write_atomic(path, lambda f: torch.save(state, f))
    _write_atomic(folder / "latest", lambda f: f.write(path.name.encode() + b"\n"))
    best = _pointer(folder, "best")
    if top1 is not None:
        best_top1 = _read_best_top1(folder)
        if best is None or best_top1 is None or top1 > best_top1:
            _write_atomic(folder / "best", lambda f: f.write(f"{path.name}\n{top1}\n".encode()))
            best = path
    steps = sorted(p for p in folder.iterdir() if STEP_FILE.match(p.name))
    for old in steps[:-keep]:
        if old != best and old != path:
            old.unlink()
    return path


def _read_best_top1(folder: Path) -> float | None:
    lines = (folder / "best").read_text().split() if (folder / "best").is_file() else []
    return float(lines[1]) if len(lines) > 1 else None


def load(path: Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's contents, loaded safely; anything else is an InputError naming the file."""
    state = safe_load(path, what="checkpoint", map_location=map_location, mmap=mmap)
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a checkpoint (holds a {type(state).__name__})")
    return state


def find(target: str | Path) -> Path | None:
    """A checkpoint file from a file path, a run folder or a checkpoints folder (its `latest`)."""
    target = Path(target)
    if target.is_file():
        return target
    for folder in (target / "checkpoints", target):
        found = _pointer(folder, "latest")
        if found is not None:
            return found
    return None
