"""torch.profiler over a few steady-state steps: `lsvr train --profile STEPS`
(train.profile_steps) and `lsvr bench train --profile`.

The first WAIT steps of the process are left alone (allocations, cuDNN's choices, a compile),
one more warms the profiler up, then STEPS steps are recorded. The trace goes to
FOLDER/trace-steps-A-B.json (chrome://tracing or https://ui.perfetto.dev open it), the full
operator table to FOLDER/top-ops.txt, and the top operators by self time are said in a few
lines. A run that ends first keeps what was recorded, and says how many steps that is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity

WAIT, WARMUP, TOP = 5, 1, 10


class StepProfiler:
    """`step()` after every training step; `close()` at the end (a summary dict, or None)."""

    def __init__(self, steps: int, folder: Path, device: torch.device, *, first_step: int = 0,
                 say: Callable[[str], None] = print, wait: int = WAIT) -> None:  # fmt: skip
        self.steps, self.folder, self.say, self.wait = steps, folder, say, wait
        self.first = first_step + wait + WARMUP + 1  # the first recorded step, counted from 1
        self.cuda = device.type == "cuda"
        self.seen, self.summary, self.closed = 0, None, False
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        schedule = torch.profiler.schedule(wait=wait, warmup=WARMUP, active=steps, repeat=1)
        self.profiler = torch.profiler.profile(activities=activities, schedule=schedule, on_trace_ready=self._ready)
        self.profiler.start()

    def step(self) -> None:
        if self.summary is None:
            self.seen += 1
            self.profiler.step()

    def close(self) -> dict[str, Any] | None:
        if not self.closed:
            self.closed = True
            self.profiler.stop()  # a recording cut short by the run's end is saved here
            if self.summary is None:
                self.say(f"profile: the run ended after {self.seen} steps, before the first recorded one"
                         f" (step {self.first}): no trace")  # fmt: skip
        return self.summary

    def _ready(self, prof: torch.profiler.profile) -> None:
        recorded = min(self.steps, self.seen - self.wait - WARMUP)
        if recorded < 1:  # stopped while warming up: nothing was recorded
            return
        last = self.first + recorded - 1
        self.folder.mkdir(parents=True, exist_ok=True)
        trace = self.folder / f"trace-steps-{self.first}-{last}.json"
        prof.export_chrome_trace(str(trace))
        by = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        averages = prof.key_averages()
        (self.folder / "top-ops.txt").write_text(averages.table(sort_by=by, row_limit=50) + "\n")
        events = [e for e in averages if not e.key.startswith("ProfilerStep")]  # the steps' own spans
        total = sum(getattr(e, by) for e in events) or 1.0
        top = sorted(events, key=lambda e: getattr(e, by), reverse=True)[:TOP]
        ops = [{"name": e.key, "self_ms": round(getattr(e, by) / 1e3, 3), "share": round(getattr(e, by) / total, 4),
                "calls": e.count} for e in top]  # fmt: skip
        short = "" if recorded == self.steps else f" (the run ended: {recorded} of {self.steps})"
        where = "device" if self.cuda else "CPU"
        self.say(f"profile: steps {self.first}-{last}{short} -> {trace}; top operators by self {where} time:")
        for op in ops:
            self.say(f"  {op['self_ms'] / recorded:9.2f} ms/step  {100 * op['share']:5.1f}%  {op['calls']:6d}x"
                     f"  {op['name']}")  # fmt: skip
        self.summary = {"trace": str(trace), "first_step": self.first, "last_step": last, "steps": recorded,
                        "self_time_of": where, "top": ops}  # fmt: skip
