"""CPU-time accounting for per-core figures, and the report shared by the benchmarks.

"Per core" is images per CPU-second summed over every thread of this process and, where
the pipeline has worker processes, over those too (they are reaped before the count is
read, so RUSAGE_CHILDREN holds their whole time).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsvr.doctor import versions


def cpu_seconds(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if children:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Measure:
    images: int
    cpu_s: float
    wall_s: float

    @property
    def per_core(self) -> float:
        return self.images / max(self.cpu_s, 1e-9)

    @property
    def per_sec(self) -> float:
        return self.images / max(self.wall_s, 1e-9)

    def as_dict(self) -> dict:
        return {
            "images": self.images, "cpu_s": round(self.cpu_s, 3), "wall_s": round(self.wall_s, 3),
            "images_per_sec_per_core": round(self.per_core, 1), "images_per_sec": round(self.per_sec, 1),
        }  # fmt: skip


def measure(run: Callable[[], int], *, children: bool = False, thread_only: bool = False) -> Measure:
    """Time run() (which returns the images it handled) in CPU and wall seconds.
    thread_only: count the calling thread alone (the one-core limits)."""
    clock = time.thread_time if thread_only else (lambda: cpu_seconds(children))
    cpu0, wall0 = clock(), time.perf_counter()
    images = run()
    return Measure(images, clock() - cpu0, time.perf_counter() - wall0)


def median(measures: list[Measure]) -> Measure:
    """The round with the median images per CPU-second."""
    return sorted(measures, key=lambda m: m.per_core)[len(measures) // 2]


def environment(workers: int) -> dict:
    return {**versions(), "cpus": os.cpu_count(), "workers": workers, "host": platform.node(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip


def report(result: dict, as_json: bool, rows: list[tuple[str, Measure]], lines: list[str]) -> None:
    """Print the result as JSON, or as a table of the measures and the summary lines."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'pipeline':<16}{'img/s/core':>12}{'img/s':>10}{'images':>9}{'cpu s':>9}{'wall s':>9}")
    for name, m in rows:
        print(f"{name:<16}{m.per_core:>12.1f}{m.per_sec:>10.1f}{m.images:>9}{m.cpu_s:>9.2f}{m.wall_s:>9.2f}")
    for line in lines:
        print(line)


def workdir(path: str | None) -> Path:
    return Path(path) if path else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lsvr-bench"
