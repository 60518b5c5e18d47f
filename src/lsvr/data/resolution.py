"""Progressive resizing (FFCV): the side training images are brought to, as a function of
the position in the run alone.

FFCV's ImageNet recipe trains ResNet-50 at 160 px, ramps the resolution linearly to 192 px
between two epochs in steps of 32 px, and evaluates higher: early epochs cost a fraction of
the arithmetic and the final accuracy holds. Here the position is the fractional epoch of
the batch being filled (epoch + step / steps per epoch), so the side is deterministic, the
same on every rank at any world size, the same after a resume, and right for batches the
loader reads ahead. Sides are multiples of `multiple` so that few shapes occur: each one is
another batch buffer, another set of kernels to pick and, compiled, another graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ResolutionRamp:
    """`start` px up to epoch `first`, `end` px from epoch `last` on, and between them the
    linear interpolation rounded to the nearest multiple of `multiple` (halves up). `start`
    and `end` are multiples themselves (config.py checks it), so every side is."""

    start: int
    end: int
    first: float  # the ramp's first epoch (fractional epochs count)
    last: float  # its last: from here on, `end`
    multiple: int

    def at(self, epoch: float) -> int:
        """The side at fractional epoch `epoch` (epoch 2.5: halfway through the third)."""
        if epoch >= self.last:
            return self.end
        if epoch <= self.first:
            return self.start
        side = self.start + (epoch - self.first) / (self.last - self.first) * (self.end - self.start)
        return math.floor(side / self.multiple + 0.5) * self.multiple

    def sides(self) -> list[int]:
        """Every side the ramp can give, smallest first (the model must take each)."""
        return list(range(self.start, self.end + 1, self.multiple))

    def describe(self) -> str:
        sides = self.sides()
        steps = f"{', '.join(map(str, sides))} px" if len(sides) <= 6 else f"{sides[0]}..{sides[-1]} px"
        return (f"lsvr train: progressive resizing: {steps} (multiples of {self.multiple}), {self.start} px up to"
                f" epoch {self.first:g}, {self.end} px from epoch {self.last:g}")  # fmt: skip
