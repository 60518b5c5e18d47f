"""The training speed shown on the progress bar and logged in metrics.jsonl, and where the
time goes: the share spent waiting for data and the speed of the rest (compute-only).

The wait is the host's time blocked on the loader's next batch (`timed`). No host-device
sync is added for it: the loop already waits on the previous step's health flags each step,
so the host runs at most one step ahead of the device, and a device starved by the loader
shows as time the host spends blocked on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    """One logging window: its seconds, the share of them spent waiting for data, the images
    per second of the rest, and whether it holds a pass's first batch (the loader's warm-up)."""

    seconds: float
    data_wait: float
    compute_images_per_sec: float
    warm_up: bool


class Throughput:
    """Images per second over the current epoch's pass, seconds per 20 steps, and the run's ETA.

    `start_epoch(batch)` where a pass over an epoch begins (at its resumed position),
    `tick(step)` after every step; the figures are read at the logging points."""

    def __init__(self, global_batch: int, *, step: int, clock=time.perf_counter) -> None:
        self.global_batch, self._clock = global_batch, clock
        self._mark_time, self._mark_step = clock(), step
        self._epoch_time, self._epoch_batch = self._mark_time, 0
        self.sec_per_20: float | None = None  # None until 20 steps have passed
        self._window_time, self._window_step, self._wait, self._warm_up = self._mark_time, step, 0.0, True

    def start_epoch(self, batch: int, step: int | None = None) -> None:
        """A pass over an epoch begins at global batch `batch` of it (at run step `step`)."""
        self._epoch_time, self._epoch_batch = self._clock(), batch
        if step is not None:
            self._window_time, self._window_step, self._wait, self._warm_up = self._epoch_time, step, 0.0, True

    def timed(self, items: Iterable[T]) -> Iterator[T]:
        """`items` as they come, the time blocked on each counted as waiting for data."""
        iterator = iter(items)
        while True:
            began = self._clock()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self._wait += self._clock() - began
            yield item

    def pause(self, seconds: float) -> None:
        """Time spent on neither data nor steps (a checkpoint saved mid-epoch): left out of the window."""
        self._window_time += seconds

    def window(self, step: int) -> Window:
        """The window since the last (or the pass's start) up to run step `step`; a new one begins."""
        now = self._clock()
        seconds = max(now - self._window_time, 1e-9)
        wait = min(self._wait, seconds)
        images = self.global_batch * (step - self._window_step)
        compute = images / max(seconds - wait, 1e-9)
        done = Window(seconds, wait / seconds, compute, self._warm_up)
        self._window_time, self._window_step, self._wait, self._warm_up = now, step, 0.0, False
        return done

    def tick(self, step: int) -> None:
        """Every 20th step: the seconds per 20 steps since the last mark."""
        if step % 20 == 0:
            now = self._clock()
            self.sec_per_20 = (now - self._mark_time) * 20 / (step - self._mark_step)
            self._mark_time, self._mark_step = now, step

    def since_epoch_start(self, batch: int) -> tuple[float, float]:
        """Seconds since the pass began, and images per second over them, at global batch `batch`."""
        seconds = self._clock() - self._epoch_time
        return seconds, self.global_batch * (batch - self._epoch_batch) / seconds

    def eta_s(self, steps_left: int, images_per_sec: float) -> float:
        """Seconds to the end of the run (not just of this epoch) at that speed."""
        return steps_left * self.global_batch / images_per_sec
