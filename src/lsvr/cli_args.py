"""What every `lsvr` parser shares: the types of its numeric options and a parser that says a
usage error in one line.

A number is checked as argparse reads it, so `lsvr eval RUN SET --batch 0` or `lsvr prepare
photos out --workers -1` stop with exit 2 and one line naming the option, before any file is
read or written (they raised ZeroDivisionError, or left OUT.partial/ behind).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse's parser with its usage errors on one line, as lsvr says every bad input
    (`lsvr eval: error: --batch must be a positive whole number, got 0`); the usage is behind
    --help. Subcommand parsers are of the same class (argparse makes them so)."""

    def error(self, message: str) -> NoReturn:
        # argparse says "argument --batch: must be ..." for a value a type refused: the option, then why
        if message.startswith("argument ") and ": must be " in message:
            message = message[len("argument ") :].replace(": must be ", " must be ", 1)
        else:
            message += f" (see `{self.prog} --help`)"
        self.exit(2, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Whole:
    """A whole number in low..high (high None: no upper bound), as an argparse `type`."""

    low: int
    high: int | None = None

    @property
    def want(self) -> str:
        if self.high is not None:
            return f"in {self.low}..{self.high}"
        return "a positive whole number" if self.low == 1 else f"a whole number >= {self.low}"

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.want}, got {text!r}") from None
        if value < self.low or (self.high is not None and value > self.high):
            raise argparse.ArgumentTypeError(f"must be {self.want}, got {value}")
        return value


@dataclass(frozen=True)
class Real:
    """A finite number in low..high, low itself excluded when `above` (nan and inf never pass)."""

    low: float
    high: float | None = None
    above: bool = False

    @property
    def want(self) -> str:
        if (self.low, self.high) == (0, 1):
            return "a fraction in 0..1"
        if self.high is not None:
            return f"in {self.low:g}..{self.high:g}"
        return f"{'>' if self.above else '>='} {self.low:g}"

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {self.want}, got {text!r}") from None
        low_ok = value > self.low if self.above else value >= self.low
        if not (math.isfinite(value) and low_ok and (self.high is None or value <= self.high)):
            raise argparse.ArgumentTypeError(f"must be {self.want}, got {value}")
        return value


positive_int = Whole(1)  # counts, sizes, batches
non_negative_int = Whole(0)  # 0 has a meaning of its own (--shift 0: none)
image_side = Whole(1, 4096)  # as prepare's --size at most: `eval --resize 100000` asked 10 TB at once
thread_count = Whole(1, 1024)  # threads or processes: 100,000 ended in "can't start new thread"
positive_float = Real(0.0, above=True)  # durations
fraction = Real(0.0, 1.0)  # shares of a whole
