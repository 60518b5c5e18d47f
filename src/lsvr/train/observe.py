"""What a run reports beside metrics.jsonl, on rank 0: TensorBoard's scalars
(train.tensorboard), the profiler's steps (train.profile_steps), the loader-bottleneck
warning (train.data_wait_warn), and the memory figure of each `train` record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from lsvr.config import Config
from lsvr.memory import resident_mb
from lsvr.train.board import Board
from lsvr.train.cpus import choose_workers
from lsvr.train.metrics import MetricsLog
from lsvr.train.profile import StepProfiler
from lsvr.train.throughput import Window


class Observers:
    def __init__(self, cfg: Config, out: Path, device: torch.device, *, main: bool, encoding: str,
                 say: Callable[[str], None]) -> None:  # fmt: skip
        self.cfg, self.out, self.device, self.main, self.encoding, self.say = cfg, out, device, main, encoding, say
        self.board = Board(out / "tb") if cfg.train.tensorboard and main else None
        self.profiler: StepProfiler | None = None
        self.warned_wait = False  # the loader-bottleneck warning: once a run

    def start(self, step: int) -> None:
        """The loop begins at run step `step`: the profiler starts counting (rank 0's steps:
        every rank runs the same ones); TensorBoard hides what an earlier attempt wrote past it."""
        if self.board is not None:
            self.board.continue_at(step)
        steps = self.cfg.train.profile_steps
        if steps and self.main:
            self.profiler = StepProfiler(steps, self.out / "profile", self.device, first_step=step, say=self.say)

    def after_step(self) -> None:
        if self.profiler is not None:
            self.profiler.step()

    def memory_mb(self) -> float:
        """The device's peak allocated memory (CUDA: read without a sync) or this process's resident memory."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resident_mb()

    def train_window(self, step: int, figures: dict[str, float], window: Window) -> None:
        """A logging window's figures to TensorBoard; the bottleneck warning where it applies."""
        if self.board is not None:
            self.board.scalars("train", step, figures)
        self.warn_data_wait(window)

    def val(self, step: int, result: dict) -> None:
        if self.board is not None:
            self.board.scalars("val", step, {k: result.get(k) for k in ("top1", "top5", "loss")})

    def warn_data_wait(self, window: Window) -> None:
        """Once a run: a whole logging window (not a pass's first, which holds the loader's
        warm-up) spent more than train.data_wait_warn of its time waiting for data."""
        limit = self.cfg.train.data_wait_warn
        if self.warned_wait or not limit or window.warm_up or window.data_wait <= limit:
            return
        self.warned_wait = True
        data = self.cfg.data
        tips = [f"more data.workers (now {choose_workers(data.workers)[0]})"]
        if self.encoding == "jpeg" and data.decode == "host":
            tips.append("data.decode=device on a GPU" if self.device.type == "cuda" else
                        "a set prepared with --encoding raw (no decoding)")  # fmt: skip
        self.say(f"lsvr train: warning: the loader is the bottleneck: {100 * window.data_wait:.0f}% of the last"
                 f" {window.seconds:.1f} s went waiting for data (train.data_wait_warn={limit:g}); try"
                 f" {' or '.join(tips)}")  # fmt: skip

    def close(self, log: MetricsLog) -> None:
        """The profiler (its trace, where the run ended inside it) and TensorBoard's files."""
        if self.profiler is not None and (summary := self.profiler.close()) is not None:
            log.write("profile", **summary)
        self.profiler = None
        if self.board is not None:
            self.board.close()
