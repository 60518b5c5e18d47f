"""Everything a run needs before its first step, checked before any process group exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsvr.config import Config
from lsvr.data.dataset import PreparedDataset
from lsvr.data.loader import Loader
from lsvr.data.match import differences, require_match
from lsvr.data.randaugment import randaugment_for
from lsvr.errors import InputError
from lsvr.evaluate import eval_loader
from lsvr.models.registry import model_spec
from lsvr.preprocess import Preprocess
from lsvr.runs.record import CheckpointRecord
from lsvr.train.changes import check_changes
from lsvr.train.cpus import choose_workers
from lsvr.train.optim import check_schedule
from lsvr.train.parallel import Distributed
from lsvr.train.prepared_check import check_prepared, open_set
from lsvr.train.preprocess_record import run_preprocess
from lsvr.train.resizing import check_resolution, resolution_ramp
from lsvr.train.run_folder import Start
from lsvr.train.validation import check_eval_view


@dataclass
class RunInputs:
    train: PreparedDataset
    val: PreparedDataset | None
    train_rows: np.ndarray  # dataset rows trained on
    val_rows: np.ndarray | None  # dataset rows validated on (of `val`, or the holdout of `train`)
    crop: int
    resume_from: Path | None
    notes: list[str | None]  # for stderr (rank 0): what a resume changes, the resolution ramp; None: nothing
    done: str | None = None  # why the checkpoint has nothing left to train ("train.max_steps=4")


def check_inputs(cfg: Config, *, start: Start, world: int, allow_changes: bool = False) -> RunInputs:
    """Open the datasets, resolve the crop, check the resumed checkpoint against them (and its
    settings against the config's: allow_changes, lsvr train --allow-changes); any problem is an
    InputError."""
    if not cfg.data.train:
        raise InputError("config: data.train is not set (a folder made by `lsvr prepare`)")
    spec = model_spec(cfg.model.name)
    train = open_set(cfg, cfg.data.train)
    prepared = [check_prepared(cfg, train)]  # data.prepared_with: first, as it names the prepare that fits
    crop = check_windows(cfg, train, default_crop=spec.default_crop)
    ramp = check_resolution(cfg, train, crop=crop)  # progressive resizing: its start line, or None
    if cfg.train.global_batch % (world * cfg.train.accumulate):
        raise InputError(
            f"train.global_batch={cfg.train.global_batch} does not divide by world size {world}"
            f" x train.accumulate {cfg.train.accumulate}"
        )
    rows = np.arange(len(train))
    val, val_rows, notes = None, None, [*prepared, ramp]
    if cfg.data.holdout:
        if not 0 < cfg.data.holdout < len(train):  # at least one image on each side
            raise InputError(f"data.holdout={cfg.data.holdout} must be between 1 and {len(train) - 1}"
                             f" ({train.path} holds {len(train)} images)")  # fmt: skip
        if cfg.data.val:
            notes.append(f"lsvr train: data.holdout={cfg.data.holdout} validates on images held out of"
                         f" {train.path}; data.val={cfg.data.val} is not used")  # fmt: skip
        perm = np.random.default_rng([cfg.train.seed, 0x401D]).permutation(len(train))
        val, val_rows = train, np.sort(perm[: cfg.data.holdout])
        rows = np.sort(perm[cfg.data.holdout :])
    elif cfg.data.val:
        val = open_set(cfg, cfg.data.val)
        notes.append(check_prepared(cfg, val))
        val_rows = np.arange(len(val))
        require_match(Preprocess.from_dataset(train), Preprocess.from_dataset(val), where=val.path,
                      names=("training set", "validation set"))  # fmt: skip
    if len(rows) < cfg.train.global_batch:
        raise InputError(f"{train.path}: {len(rows)} training images, fewer than one global batch")
    steps_per_epoch = len(rows) // cfg.train.global_batch
    check_schedule(cfg.optim, steps_per_epoch=steps_per_epoch, run_steps=steps_per_epoch * cfg.train.epochs)
    if val is not None:
        check_eval_view(cfg, run_preprocess(cfg, train, crop=crop), train=train, crop=crop)
    done = None
    if start.state is not None:
        # Read (memory-mapped) before any process group exists, so a wrong file fails fast everywhere.
        notes += resume_fits(cfg, start.state, train=train, crop=crop, where=start.resume_from,
                             allow_changes=allow_changes, forked=start.forked)  # fmt: skip
        done = nothing_to_train(cfg, start.state, steps_per_epoch=len(rows) // cfg.train.global_batch)
    return RunInputs(train, val, rows, val_rows, crop, start.resume_from, notes, done)


def check_windows(cfg: Config, train: PreparedDataset, *, default_crop: int) -> int:
    """The crop the model sees (data.crop, or the model's default capped at the shorter side),
    with what cannot hold: the paper's random crop larger than the images, and a mean image
    on windows that are resized (rrc) or of images of varying shape (no per-pixel mean there)."""
    variable = not train.shape[0]  # prepare --resize short: each image's shape its own
    short = int(train.meta["size"]) if variable else min(train.shape[:2])
    crop = cfg.data.crop or min(default_crop, short)
    if cfg.data.normalize == "mean_image" and (variable or cfg.data.augment == "rrc"):
        why = "with data.augment=rrc" if cfg.data.augment == "rrc" else f"on {train.path} (images of varying shape)"
        raise InputError(f"data.normalize=mean_image has no meaning {why}: a per-pixel mean needs every image"
                         " cut at the same place; use data.normalize=channel")  # fmt: skip
    if crop > short:  # rrc too: past the stored side a window is only upscaled (and 10000 px asked 77 GB)
        side = f"shorter side {short}" if variable else f"{short}"
        raise InputError(f"data.crop={crop} is larger than the images of {train.path} ({side}); use a data.crop"
                         f" of at most {short}, or prepare the set at a larger --size")  # fmt: skip
    return crop


def nothing_to_train(cfg: Config, state: CheckpointRecord, *, steps_per_epoch: int) -> str | None:
    """Why the checkpoint has nothing left to train: at or past train.max_steps, or past its
    last epoch (a resume of a finished run then writes nothing). None where there is work left,
    including a checkpoint saved on an epoch's last step before that epoch's validation."""
    loader = state.loader
    if loader.get("global_batch", cfg.train.global_batch) != cfg.train.global_batch:
        return None  # its position counts other batches: the engine refuses it, naming both
    step, epoch, at = state.step, loader.get("epoch", 0), loader.get("step", 0)
    if at >= steps_per_epoch:
        return None  # the epoch's validation is still to run (the engine does it first)
    if cfg.train.max_steps and step >= cfg.train.max_steps:
        why = f"train.max_steps={cfg.train.max_steps}"
    elif epoch >= cfg.train.epochs:
        why = f"all {cfg.train.epochs} epochs done"
    elif cfg.train.time_budget_s and state.budget_steps and step >= state.budget_steps:
        why = f"the {state.budget_steps} steps train.time_budget_s fixed"
    else:
        return None
    return why


def resume_fits(cfg: Config, state: CheckpointRecord, *, train: PreparedDataset, crop: int, where: Path,
                allow_changes: bool = False, forked: bool = False) -> list[str | None]:  # fmt: skip
    """Refuse (naming the field and both values) a checkpoint of another model or optimizer
    (optim.name), or whose model would see other images: classes (order included), stored size,
    crop or normalisation. Returns the line to say about the settings that differ from the
    checkpoint's (lsvr.train.changes: those that change the run's arithmetic refused unless
    allow_changes, or forked: a new run from another run's checkpoint)."""
    name = state.setting("model", "name")
    if name != cfg.model.name:
        raise InputError(f"{where}: a checkpoint of another model ({name}) than {cfg.model.name}")
    if state.optimizer is None or state.rng is None or not state.loader:
        raise InputError(f"{where}: holds a model but no training state to resume (a converted checkpoint?);"
                         " start from its weights with model.init_from")  # fmt: skip
    optimizer = state.setting("optim", "name", "sgd")  # an lsvr before optim.name had sgd alone
    if optimizer != cfg.optim.name:
        raise InputError(f"{where}: holds the optimizer state of optim.name={optimizer}; this config has"
                         f" optim.name={cfg.optim.name} (resume with {optimizer}, or start from its weights"
                         " with model.init_from)")  # fmt: skip
    pre = state.preprocess or Preprocess()
    now = Preprocess.from_dataset(train, crop=crop, normalize=cfg.data.normalize)
    problems = differences(pre, now, names=("checkpoint", "dataset"))
    problems += differences(pre, now, names=("checkpoint", "now"), fields=("crop", "normalize"))
    if not problems:
        problems += _statistics(pre, train, cfg.data.normalize)
    if problems:
        raise InputError(f"{train.path}: does not fit the checkpoint {where}: " + "; ".join(problems))
    return [check_changes(cfg, state.config or {}, where=where, allowed=allow_changes, forked=forked)]


def _statistics(pre: Preprocess, train: PreparedDataset, normalize: str) -> list[str]:
    """The statistics the model's inputs are normalised with, the checkpoint's against the dataset's."""
    if normalize == "channel":
        pairs = [("channel mean", pre.channel_mean, train.channel_mean),
                 ("channel std", pre.channel_std, train.channel_std)]  # fmt: skip
        return [
            f"normalisation {what}: checkpoint {[round(float(v), 3) for v in a]}, dataset {[round(v, 3) for v in b]}"
            for what, a, b in pairs
            if a is not None and not np.allclose(np.asarray(a, dtype=np.float64), b, rtol=1e-5, atol=1e-4)
        ]
    saved = pre.mean_image
    if saved is None:
        return []
    saved = np.asarray(saved, dtype=np.float32)
    if saved.shape == train.mean_image.shape and np.allclose(saved, train.mean_image, atol=1e-3):
        return []
    return [f"normalisation mean image: checkpoint's average {float(saved.mean()):.2f},"
            f" dataset's {float(train.mean_image.mean()):.2f} (another training set)"]  # fmt: skip


def run_loaders(cfg: Config, inputs: RunInputs, pre: Preprocess, *, env: Distributed,
                warn: Callable[[str], None]) -> tuple[Loader, Loader | None]:  # fmt: skip
    """The run's training loader (this rank's share of each global batch, its augmentation and
    resolution ramp) and its validation loader (None without data.val), as `pre` views it."""
    per_rank = cfg.train.global_batch // env.world
    workers, _ = choose_workers(cfg.data.workers)  # 0: the job's CPUs over its local processes
    common = {"rank": env.rank, "world": env.world, "workers": workers, "device": env.device,
              "decode": cfg.data.decode, "bad_records": cfg.data.bad_records, "warn": warn}  # fmt: skip
    loader = Loader(
        inputs.train, batch_size=per_rank, shuffle=True, seed=cfg.train.seed, indices=inputs.train_rows,
        prefetch=cfg.data.prefetch, crop=inputs.crop, flip=cfg.data.flip, window=cfg.data.augment,
        scale=tuple(cfg.data.rrc_scale), ratio=tuple(cfg.data.rrc_ratio),
        resolution=resolution_ramp(cfg.data, crop=inputs.crop), randaugment=randaugment_for(cfg.data.randaugment),
        epochs=cfg.train.epochs,
        **common,
    )  # fmt: skip
    if inputs.val is None:
        return loader, None
    return loader, eval_loader(inputs.val, pre, batch_size=per_rank, indices=inputs.val_rows, **common)
