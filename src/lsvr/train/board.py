"""TensorBoard (train.tensorboard=true): the figures of the `train` and `val` records as
scalars under RUN/tb, written by torch.utils.tensorboard on rank 0.

tensorboard is an optional extra (`pip install lsvr[tensorboard]`), imported only when asked;
`require_tensorboard` refuses the run in one line before anything is written where it is missing.
A resumed run adds an events file beside the first: TensorBoard shows them as one run, without
the scalars an earlier attempt wrote past the step it continues from (SummaryWriter's purge_step,
as read_metrics drops those records of metrics.jsonl).
"""

from __future__ import annotations

from pathlib import Path

from lsvr.errors import InputError


def require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise InputError(
            "config: train.tensorboard=true needs the tensorboard package: pip install 'lsvr[tensorboard]'"
        ) from None


class Board:
    """The writer opens (and makes RUN/tb) at the first scalars, once the run has started: a
    start refused after the board exists leaves no folder behind."""

    def __init__(self, folder: Path) -> None:
        require_tensorboard()
        self.folder, self.writer = folder, None
        self.purge_step: int | None = None  # events of an earlier attempt from this step on are hidden

    def continue_at(self, step: int) -> None:
        """The run goes on after `step`: what an earlier attempt wrote past it is superseded."""
        if self.folder.is_dir():
            self.purge_step = step + 1

    def scalars(self, group: str, step: int, values: dict[str, float | None]) -> None:
        """`group/name` for each value (None left out), at step `step`."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=self.purge_step)
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(f"{group}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
