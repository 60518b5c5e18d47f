"""A Trainer and its checkpoints: `restore` continues a run from one, `record_of` is what one
holds of it (enough to continue exactly: RunState's entries, the RNGs, the EMA and Lookahead)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lsvr.config import to_dict
from lsvr.errors import InputError
from lsvr.runs import checkpoints
from lsvr.runs.provenance import provenance
from lsvr.runs.record import CheckpointRecord
from lsvr.train.state import RunState, rng_state, set_rng_state

if TYPE_CHECKING:
    from lsvr.train.trainer import Trainer


def restore(trainer: Trainer) -> None:
    """Continue from inputs.resume_from (if any): weights, optimizer, scaler, position, RNGs."""
    where, cfg = trainer.inputs.resume_from, trainer.cfg
    if where is None:
        return
    saved = checkpoints.read(where)  # on the CPU: load_state_dict moves each tensor
    settings = [{k: v for k, v in group.items() if k != "params"} for group in trainer.optimizer.param_groups]
    try:
        trainer.model.load_state_dict(saved.model)
        trainer.optimizer.load_state_dict(saved.optimizer)
    except (RuntimeError, ValueError) as exc:
        message = str(exc).splitlines()[0]
        raise InputError(f"{where}: does not fit this config's model ({message})") from None
    # torch's load_state_dict gives each group the saved decay, momentum, betas and lr multiplier:
    # the config's are the run's (a change lsvr.train.changes accepted; the same values otherwise).
    for group, setting in zip(trainer.optimizer.param_groups, settings, strict=True):
        group.update(setting)
    if saved.scaler:
        trainer.scaler.load_state_dict(saved.scaler)
    if trainer.ema is not None:  # a checkpoint without an average starts one at its weights
        trainer.ema.load_state_dict(saved.ema if saved.ema is not None else saved.model, where=where)
    if trainer.lookahead is not None:  # likewise its slow weights
        trainer.lookahead.load_state_dict(saved.lookahead or saved.model, where=where)
    saved_batch = saved.loader.get("global_batch", cfg.train.global_batch)
    if saved_batch != cfg.train.global_batch:  # the position counts global batches: they must agree
        raise InputError(f"{where}: written with train.global_batch={saved_batch}; resume with it")
    trainer.state.load_state_dict({key: getattr(saved, key) for key in RunState.KEYS})
    if trainer.start.forked:  # another run's scores (and data.val) are not this run's
        trainer.state.best_top1, trainer.state.last_val = None, None
    if trainer.val_loader is None:
        trainer.state.last_val = None
    set_rng_state(saved.rng)
    if saved.threads not in (None, torch.get_num_threads()):
        trainer.say(f"lsvr train: warning: {saved.threads} threads wrote the checkpoint, {torch.get_num_threads()}"
                    " run now: the result will not be bitwise the same (set train.threads)")  # fmt: skip
    trainer.say(f"lsvr train: resumed from {where} at step {trainer.state.step} (epoch {trainer.state.epoch + 1})")


def record_of(trainer: Trainer) -> CheckpointRecord:
    """Everything a checkpoint holds of the run at its present position."""
    scaler, state = trainer.scaler, trainer.state
    return CheckpointRecord(
        model=trainer.model.state_dict(), optimizer=trainer.optimizer.state_dict(), scheduler={"step": state.step},
        scaler=scaler.state_dict() if scaler.is_enabled() else {}, **state.state_dict(), rng=rng_state(),
        config=to_dict(trainer.cfg), preprocess=trainer.preprocess, threads=torch.get_num_threads(),
        world=trainer.env.world, run_id=trainer.start.run_id, provenance=provenance(),
        ema=trainer.ema.state_dict() if trainer.ema is not None else None,
        lookahead=trainer.lookahead.state_dict() if trainer.lookahead is not None else None,
    )  # fmt: skip
