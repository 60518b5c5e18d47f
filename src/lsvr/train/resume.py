"""A run's parts and its checkpoints: `restore` continues a run from one, `record_of` is what one
holds of it (enough to continue exactly). Both work on the Trainer's Stateful parts
(lsvr.train.parts): each part saves and loads its own entries of the record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from lsvr.config import Config, to_dict
from lsvr.errors import InputError
from lsvr.preprocess import Preprocess
from lsvr.runs import checkpoints
from lsvr.runs.provenance import provenance
from lsvr.runs.record import CheckpointRecord
from lsvr.train.parts import TrainingParts
from lsvr.train.state import RunState


def restore(parts: TrainingParts, where: Path, *, forked: bool, validates: bool, say: Callable[[str], None]) -> None:
    """Continue from the checkpoint at `where`: every part loads its entries, in place. forked: a
    run started from another run's checkpoint (its scores are not this run's); validates: this
    run has a validation set (else no last validation carries over)."""
    saved = checkpoints.read(where)  # on the CPU: load_state_dict moves each tensor
    try:
        parts.model.load_state_dict(saved.model)
        parts.optimizer.load_state_dict(saved.optimizer)
    except (RuntimeError, ValueError) as exc:
        message = str(exc).splitlines()[0]
        raise InputError(f"{where}: does not fit this config's model ({message})") from None
    parts.scaler.load_state_dict(saved.scaler)
    try:
        if parts.ema is not None:  # a checkpoint without an average starts one at its weights
            parts.ema.load_state_dict(saved.ema if saved.ema is not None else saved.model)
        if parts.lookahead is not None:  # likewise its slow weights
            parts.lookahead.load_state_dict(saved.lookahead or saved.model)
        parts.state.load_state_dict({key: getattr(saved, key) for key in RunState.KEYS})
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    state = parts.state
    if forked:  # another run's scores (and data.val) are not this run's
        state.best_top1, state.last_val = None, None
    if not validates:
        state.last_val = None
    parts.rngs.load_state_dict(saved.rng)
    if saved.threads not in (None, torch.get_num_threads()):
        say(f"lsvr train: warning: {saved.threads} threads wrote the checkpoint, {torch.get_num_threads()}"
            " run now: the result will not be bitwise the same (set train.threads)")  # fmt: skip
    say(f"lsvr train: resumed from {where} at step {state.step} (epoch {state.epoch + 1})")


def record_of(
    parts: TrainingParts, *, cfg: Config, preprocess: Preprocess, world: int, run_id: str
) -> CheckpointRecord:
    """Everything a checkpoint holds of the run at its present position: each part's entries,
    then what describes the run (config, preprocess record, threads, world, provenance)."""
    state, ema, lookahead = parts.state, parts.ema, parts.lookahead
    return CheckpointRecord(
        model=parts.model.state_dict(), optimizer=parts.optimizer.state_dict(), scheduler={"step": state.step},
        scaler=parts.scaler.state_dict(), **state.state_dict(), rng=parts.rngs.state_dict(),
        config=to_dict(cfg), preprocess=preprocess, threads=torch.get_num_threads(), world=world, run_id=run_id,
        provenance=provenance(), ema=ema.state_dict() if ema is not None else None,
        lookahead=lookahead.state_dict() if lookahead is not None else None,
    )  # fmt: skip
