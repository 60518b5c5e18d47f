"""Everything a run needs before its first step, checked before any process group exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsvr.config import Config
from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.models.registry import model_spec
from lsvr.train import checkpoint


@dataclass
class RunInputs:
    train: PreparedDataset
    val: PreparedDataset | None
    train_rows: np.ndarray  # dataset rows trained on
    val_rows: np.ndarray | None  # dataset rows validated on (of `val`, or the holdout of `train`)
    crop: int
    resume_from: Path | None


def check_inputs(cfg: Config, *, out: Path, resume: str | None, world: int) -> RunInputs:
    """Open the datasets, resolve crop and resume point; any problem is an InputError."""
    if not cfg.data.train:
        raise InputError("config: data.train is not set (a folder made by `lsvr prepare`)")
    spec = model_spec(cfg.model.name)
    train = PreparedDataset(cfg.data.train)
    size = train.shape[0]
    crop = cfg.data.crop or min(spec.default_crop, size)
    if crop > min(train.shape[:2]):
        raise InputError(f"data.crop={crop} is larger than the images of {train.path} ({size})")
    if cfg.train.global_batch % (world * cfg.train.accumulate):
        raise InputError(
            f"train.global_batch={cfg.train.global_batch} does not divide by world size {world}"
            f" x train.accumulate {cfg.train.accumulate}"
        )
    rows = np.arange(len(train))
    val, val_rows = None, None
    if cfg.data.holdout:
        if not 0 < cfg.data.holdout < len(train):
            raise InputError(f"data.holdout={cfg.data.holdout} must be between 0 and {len(train)}")
        perm = np.random.default_rng([cfg.train.seed, 0x401D]).permutation(len(train))
        val, val_rows = train, np.sort(perm[: cfg.data.holdout])
        rows = np.sort(perm[cfg.data.holdout :])
    elif cfg.data.val:
        val = PreparedDataset(cfg.data.val)
        val_rows = np.arange(len(val))
        if val.shape != train.shape or val.classes != train.classes:
            raise InputError(f"{val.path}: image shape or classes differ from {train.path}")
    if len(rows) < cfg.train.global_batch:
        raise InputError(f"{train.path}: {len(rows)} training images, fewer than one global batch")
    resume_from = None
    if resume == "auto":
        resume_from = checkpoint.find_valid(out)
    elif resume:
        resume_from = checkpoint.find_valid(resume)
        if resume_from is None:
            raise InputError(f"{resume}: no checkpoint there (expected a .pt file or a run folder)")
    if resume_from is not None:
        # Read (memory-mapped) before any process group exists, so a wrong file fails fast everywhere.
        name = checkpoint.load(resume_from, mmap=True).get("config", {}).get("model", {}).get("name")
        if name != cfg.model.name:
            raise InputError(f"{resume_from}: a checkpoint of another model ({name}) than {cfg.model.name}")
    return RunInputs(train, val, rows, val_rows, crop, resume_from)
