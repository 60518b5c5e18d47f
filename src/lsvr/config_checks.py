"""The range checks of the configuration: numbers outside what their key means, and keys
that only make sense together. lsvr.config_file.from_dict calls check_ranges on every config it
builds (a preset, its --set overrides, a run folder's config.yaml); each refusal is one
InputError line naming the key. Config.__post_init__ checks the choices alone: this module
stands above lsvr.config, whose types it checks."""

from __future__ import annotations

import dataclasses
import itertools
import math

from lsvr.config import CUDA_GRAPH_MODES, Config, DataConfig, OptimConfig, TrainConfig
from lsvr.errors import InputError
from lsvr.prepared_with import prepared_with

MAX_SEED = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max, without importing torch here


def check_ranges(cfg: Config) -> None:
    """Numbers outside what their key means: a negative seed or thread count crashed deep in
    torch, a momentum of 2 or a negative weight decay trained silently into nonsense."""
    _check_float32(cfg)
    at_least = (
        ("train.global_batch", cfg.train.global_batch, 1),
        ("train.epochs", cfg.train.epochs, 1),
        ("train.accumulate", cfg.train.accumulate, 1),
        ("train.log_every", cfg.train.log_every, 1),
        ("train.val_from", cfg.train.val_from, 1),
        ("train.max_steps", cfg.train.max_steps, 0),
        ("train.profile_steps", cfg.train.profile_steps, 0),
        ("train.lookahead_steps", cfg.train.lookahead_steps, 0),
        ("train.threads", cfg.train.threads, 0),
        ("train.seed", cfg.train.seed, 0),
        ("data.prefetch", cfg.data.prefetch, 1),
        ("data.workers", cfg.data.workers, 0),
        ("data.holdout", cfg.data.holdout, 0),
        ("data.crop", cfg.data.crop, 0),
        ("data.eval_size", cfg.data.eval_size, 0),
        ("data.eval_crop", cfg.data.eval_crop, 0),
        ("data.val_shift", cfg.data.val_shift, 0),
        ("checkpoint.keep", cfg.checkpoint.keep, 2),
        ("checkpoint.every_steps", cfg.checkpoint.every_steps, 0),
        ("parallel.average_every", cfg.parallel.average_every, 1),
        ("parallel.timeout_s", cfg.parallel.timeout_s, 1),
        ("parallel.bucket_mb", cfg.parallel.bucket_mb, 1),
        ("optim.weight_decay", cfg.optim.weight_decay, 0),
        ("optim.warmup_epochs", cfg.optim.warmup_epochs, 0),
        ("optim.bias_lr_mult", cfg.optim.bias_lr_mult, 0),
        ("guard.max_skips", cfg.guard.max_skips, 0),
        ("guard.clip_norm", cfg.guard.clip_norm, 0),
    )
    for key, value, low in at_least:
        if value < low:
            raise InputError(f"config: {key} must be >= {low}, got {value}")
    if cfg.train.seed > MAX_SEED:  # the loader's keys hash the seed as a 64-bit word
        raise InputError(f"config: train.seed must be <= {MAX_SEED}, got {cfg.train.seed}")
    fractions = [("optim.momentum", cfg.optim.momentum), ("train.label_smoothing", cfg.train.label_smoothing),
                 ("train.data_wait_warn", cfg.train.data_wait_warn)]  # fmt: skip
    if cfg.model.dropout is not None:
        fractions.append(("model.dropout", cfg.model.dropout))
    for key, value in fractions:
        if not 0.0 <= value < 1.0:
            raise InputError(f"config: {key} must be in [0, 1), got {value}")
    if cfg.train.lookahead_steps and cfg.parallel.mode == "average" and cfg.parallel.average_every > 1:
        raise InputError("config: train.lookahead_steps with parallel.average_every > 1: each rank's slow"
                         " weights would drift apart between the averages; average every step, or use ddp")  # fmt: skip
    if cfg.model.whiten and cfg.model.init_from:
        raise InputError("config: model.whiten would replace the first conv of model.init_from's weights; give one")
    prepared_with(cfg.data.prepared_with)  # options lsvr prepare's own parser refuses: said before any work
    _check_rrc(cfg.data)
    _check_mix(cfg.data)
    _check_resolution(cfg.data)
    _check_randaugment(cfg.data)
    _check_schedule(cfg.optim)
    _check_adamw(cfg.optim)
    _check_ema_budget(cfg.train)
    if cfg.train.global_batch % cfg.train.accumulate:
        raise InputError("config: train.global_batch must divide by train.accumulate")
    if cfg.train.accumulate > 1 and cfg.train.compile in CUDA_GRAPH_MODES:
        # each micro-batch's graph replay would overwrite the gradients the last one left
        raise InputError(f"config: train.compile={cfg.train.compile} (CUDA graphs) cannot accumulate"
                         " gradients; use max-autotune-no-cudagraphs or train.accumulate=1")  # fmt: skip


def _check_float32(cfg: Config) -> None:
    """Every float key (list items too) is finite and fits a float32: torch takes lr, weight decay
    and the rest as float32 scalars, and optim.lr=1e308 passed every range above, then crashed at
    the first step ("value cannot be converted to type float without overflow")."""
    for section in dataclasses.fields(cfg):
        values = getattr(cfg, section.name)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, float) and not (math.isfinite(item) and abs(item) <= FLOAT32_MAX):
                    raise InputError(f"config: {section.name}.{f.name} must be a finite number within float32's"
                                     f" range (at most {FLOAT32_MAX:.4g} in size), got {value}")  # fmt: skip


def _check_ema_budget(train: TrainConfig) -> None:
    """An EMA decay of 1 never moves, one of 0 is no average; Lookahead's alpha 0 never moves the
    slow weights; a budget under a second holds no step and its validation (one spent before the
    first step is refused by lsvr.train.budget)."""
    if train.ema and not 0.0 < train.ema < 1.0:
        raise InputError(f"config: train.ema must be in (0, 1), or 0 for no EMA; got {train.ema}")
    if not train.ema_halflife >= 0:
        raise InputError(f"config: train.ema_halflife must be >= 0, got {train.ema_halflife}")
    if train.ema and train.ema_halflife:
        raise InputError("config: train.ema and train.ema_halflife both set; give the EMA's decay one way")
    if not 0.0 < train.lookahead_alpha <= 1.0:
        raise InputError(f"config: train.lookahead_alpha must be in (0, 1], got {train.lookahead_alpha}")
    budget = train.time_budget_s
    if not (budget == 0 or 1.0 <= budget < float("inf")):
        raise InputError(f"config: train.time_budget_s must be >= 1 s (or 0: no budget), got {budget}")


def _check_schedule(optim: OptimConfig) -> None:
    """What the schedule's keys can mean without the run's length (lsvr.train.optim.check_schedule
    has the rest): boundaries in order, whole steps, one warm-up, a peak for the triangle."""
    steps = optim.lr_steps
    if any(s < 0 for s in steps) or any(b <= a for a, b in itertools.pairwise(steps)):
        raise InputError(f"config: optim.lr_steps must be increasing and >= 0 (in optim.unit), got {steps}")
    for key, value in (("warmup", optim.warmup), ("peak", optim.peak)):
        if value < 0:
            raise InputError(f"config: optim.{key} must be >= 0, got {value}")
    if optim.unit == "step":
        for key, values in (("lr_steps", steps), ("warmup", [optim.warmup]), ("peak", [optim.peak])):
            if not all(float(v).is_integer() for v in values):
                raise InputError(f"config: optim.{key} counts whole steps with optim.unit=step, got {values}")
    if optim.warmup and optim.warmup_epochs:
        raise InputError("config: optim.warmup and optim.warmup_epochs are two names of one warm-up: give one")
    for key, value in (("start_factor", optim.start_factor), ("end_factor", optim.end_factor)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"config: optim.{key} must be in [0, 1], got {value}")
    if optim.schedule == "triangular":
        if not optim.peak > 0:
            raise InputError(
                "config: optim.schedule=triangular needs optim.peak > 0 (at 0 it is optim.schedule=linear)"
            )
        if optim.warmup or optim.warmup_epochs:
            raise InputError("config: optim.schedule=triangular ramps up to optim.peak itself: no warm-up with it")


def _check_adamw(optim: OptimConfig) -> None:
    """AdamW's betas are decay rates of running means (1 never forgets, and divides by zero in its
    bias correction); its eps keeps the division finite. Nesterov is SGD's alone."""
    betas = optim.betas
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise InputError(f"config: optim.betas must be two numbers in [0, 1), got {betas}")
    if not optim.eps > 0:
        raise InputError(f"config: optim.eps must be > 0, got {optim.eps}")
    if optim.name != "sgd" and optim.nesterov:
        raise InputError(f"config: optim.nesterov=true is sgd's; optim.name={optim.name} has none")


def _check_mix(data: DataConfig) -> None:
    """Beta(alpha, alpha) needs alpha > 0 (0 is off); the switch is a probability."""
    for key, alpha in (("data.mixup", data.mixup), ("data.cutmix", data.cutmix)):
        if not alpha >= 0:
            raise InputError(f"config: {key} must be >= 0 (0: off), got {alpha}")
    if not 0.0 <= data.mix_switch <= 1.0:
        raise InputError(f"config: data.mix_switch must be in [0, 1], got {data.mix_switch}")


def _check_randaugment(data: DataConfig) -> None:
    """[num_ops, magnitude] or []: at least one op; a magnitude is one of torchvision's 31 bins."""
    ra = data.randaugment
    if ra and (len(ra) != 2 or ra[0] < 1 or not 0 <= ra[1] <= 30):
        raise InputError(f"config: data.randaugment must be [num_ops >= 1, magnitude 0..30] or [] (off), got {ra}")


def _check_rrc(data: DataConfig) -> None:
    """RandomResizedCrop's bounds: two numbers, low <= high; areas in (0, 1], ratios above 0."""
    for key, pair, top in (("data.rrc_scale", data.rrc_scale, 1.0), ("data.rrc_ratio", data.rrc_ratio, None)):
        if len(pair) != 2 or not 0 < pair[0] <= pair[1] or (top is not None and pair[1] > top):
            within = f"0 < low <= high <= {top}" if top is not None else "0 < low <= high"
            raise InputError(f"config: {key} must be [low, high] with {within}, got {pair}")


def _check_resolution(data: DataConfig) -> None:
    """Progressive resizing's keys on their own (train/resizing.py checks them against the
    crop, the set and the model): a ramp that grows, on the grid of res_multiple."""
    start, end, epochs, multiple = data.res_start, data.res_end, data.res_epochs, data.res_multiple
    if multiple < 1:
        raise InputError(f"config: data.res_multiple must be >= 1, got {multiple}")
    if not start:
        if end:
            raise InputError(f"config: data.res_end={end} needs data.res_start (0: progressive resizing is off)")
        return
    if start < 8:  # a network's strides leave nothing of a smaller image
        raise InputError(f"config: data.res_start must be 0 (off) or >= 8, got {start}")
    for key, side in (("data.res_start", start), ("data.res_end", end)):
        if side % multiple:
            raise InputError(f"config: {key}={side} is not a multiple of data.res_multiple={multiple}")
    if end and start > end:
        raise InputError(f"config: data.res_start={start} > data.res_end={end}: the resolution must not decrease")
    if len(epochs) != 2 or not 0 <= epochs[0] <= epochs[1] or not epochs[1] > 0:
        raise InputError(f"config: data.res_epochs must be [a, b] with 0 <= a <= b and b > 0, got {epochs}")
