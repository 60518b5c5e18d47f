"""Progress on stderr: a tqdm bar on a terminal, plain lines anywhere else.

A bar redraws itself with carriage returns; written to a log file that is 140 KB of frames
for the demo alone. When stderr is not a terminal, `progress_bar` returns a LineProgress
with the same methods that prints one line per logging window (set_postfix) or per
`every_s` seconds instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


class LineProgress:
    """tqdm's update/set_postfix/close, as whole lines: `epoch 1/3: 50/120 step  loss=2.3010 ...`."""

    def __init__(self, *, total: int, initial: int, desc: str, unit: str, every_s: float | None,
                 postfix: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.n, self.total, self.desc, self.unit, self.every_s = initial, total, desc, unit, every_s
        self.postfix: dict[str, Any] = dict(postfix or {})
        self._last_line, self._shown = time.monotonic(), initial

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.every_s is not None and time.monotonic() - self._last_line >= self.every_s:
            self._line()

    def set_postfix(self, **fields: Any) -> None:
        """A logging window closed: its figures on a line of their own."""
        self.postfix = fields
        self._line()

    def close(self) -> None:
        if self.every_s is not None and self.n != self._shown:
            self._line()  # where it ended, unless that line is out already

    def _line(self) -> None:
        fields = "  ".join(f"{key}={value}" for key, value in self.postfix.items())
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}  {fields}".rstrip(), file=sys.stderr, flush=True)
        self._last_line, self._shown = time.monotonic(), self.n


def progress_bar(*, total: int, desc: str, unit: str, enabled: bool = True, initial: int = 0,
                 every_s: float | None = None, postfix: dict[str, Any] | None = None,
                 **tqdm_options: Any) -> tqdm | LineProgress:  # fmt: skip
    """A tqdm bar on a terminal; plain lines (per set_postfix, and per every_s seconds when given)
    when stderr is a file or a pipe; nothing when not enabled. postfix: figures to show from the
    start (the previous epoch's last window)."""
    if enabled and not sys.stderr.isatty():
        return LineProgress(total=total, initial=initial, desc=desc, unit=unit, every_s=every_s, postfix=postfix)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                file=sys.stderr, postfix=postfix or None, **tqdm_options)  # fmt: skip
