"""The training speed shown on the progress bar and logged in metrics.jsonl."""

from __future__ import annotations

import time


class Throughput:
    """Images per second over the current epoch's pass, seconds per 20 steps, and the run's ETA.

    `start_epoch(batch)` where a pass over an epoch begins (at its resumed position),
    `tick(step)` after every step; the figures are read at the logging points."""

    def __init__(self, global_batch: int, *, step: int, clock=time.perf_counter) -> None:
        self.global_batch, self._clock = global_batch, clock
        self._mark_time, self._mark_step = clock(), step
        self._epoch_time, self._epoch_batch = self._mark_time, 0
        self.sec_per_20: float | None = None  # None until 20 steps have passed

    def start_epoch(self, batch: int) -> None:
        """A pass over an epoch begins at global batch `batch` of it."""
        self._epoch_time, self._epoch_batch = self._clock(), batch

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
