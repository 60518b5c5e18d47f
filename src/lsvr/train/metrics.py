"""metrics.jsonl written: one JSON object per line, by rank 0 only (read by lsvr.runs.metrics)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class WriteError(RuntimeError):
    """A run-folder file other than a checkpoint could not be written (a full disk, say)."""


class MetricsLog:
    def __init__(self, path: Path, *, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self._checked_end = False

    def write(self, kind: str, **values: Any) -> None:
        """Append one record; WriteError (one line naming the file) where the disk refuses it."""
        if not self.enabled:
            return
        line = json.dumps({"kind": kind, "time": round(time.time(), 3), **values}) + "\n"
        try:
            if not self._checked_end:
                # A killed run (or a full disk) can leave a torn last line: the next record
                # starts on a line of its own instead of being glued onto it.
                if _ends_torn(self.path):
                    line = "\n" + line
                self._checked_end = True
            with open(self.path, "a") as f:
                f.write(line)
        except OSError as exc:
            raise WriteError(f"{self.path}: could not be written ({exc.strerror or exc})") from None


def _ends_torn(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False
