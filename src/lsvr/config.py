"""Typed, strict configuration: nested dataclasses, YAML presets, `--set a.b=c` overrides.

Every field carries a one-line doc (its `metadata["doc"]`); an unknown key or a value of
the wrong type raises InputError naming the valid keys, before anything else starts.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from lsvr.errors import InputError

# The choices of a key are its Literal type, checked in Config.__post_init__ and read by the
# cli's flags (`choices(Device)`): one list of each. Encoding and ResizePolicy are prepare's.
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16", "fp16"]
CompileMode = Literal["none", "default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead"]
Decode = Literal["host", "device"]
Augmentation = Literal["crop", "rrc"]
Encoding = Literal["raw", "jpeg"]
ResizePolicy = Literal["squash", "center", "pad", "short"]
StopOrSkip = Literal["stop", "skip"]
Optimizer = Literal["sgd", "adamw"]  # optim.name (lsvr.train.optim.build_optimizer)
ScheduleKind = Literal["step", "cosine", "triangular", "linear"]  # optim.schedule (lsvr.train.optim.Schedule)
ScheduleUnit = Literal["epoch", "step"]  # optim.unit
CUDA_GRAPH_MODES = ("max-autotune", "reduce-overhead")  # torch.compile's modes that add CUDA graphs
Fault = Literal["none", "nan", "die", "hang", "kill_save"]  # debug.fault (lsvr.train.faults)
KillPoint = Literal["mid-write", "before-fsync", "before-rename", "before-latest", "during-prune"]


def choices(alias: Any) -> tuple[str, ...]:
    """The values of a Literal type, in their order: `choices(Device) == ("auto", "cpu", "cuda")`."""
    return typing.get_args(alias)


FAULTS, KILL_POINTS = choices(Fault), choices(KillPoint)


def _f(default: Any, doc: str) -> Any:
    """A dataclass field with its one-line doc; lists get a fresh copy per instance."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class ModelConfig:
    name: str = _f("alexnet", "model name, see `lsvr models`")
    dropout: float | None = _f(
        None,
        "classifier dropout; null: the model's own (alexnet*, vgg*: 0.5; googlenet: 0.2; the others have none)",
    )
    zero_init_residual: bool = _f(False, "start each residual block's last BatchNorm scale at 0 (resnet* only)")
    init_from: str | None = _f(None, "weights to start from: torchvision state_dict, lsvr checkpoint, run or export")
    width: float = _f(1.0, "channel-width multiplier (alexnet_small* and quicknet only)")
    blurpool: bool = _f(
        False, "blur (3x3 binomial) before each strided conv of >= 16 input channels, as FFCV (resnet*, convnext_tiny)"
    )
    whiten: bool = _f(
        False, "airbench's first layer: the first conv's filters whiten the training images' patches, frozen"
    )


@dataclass
class DataConfig:
    train: str = _f("", "prepared training dataset folder (see `lsvr prepare`)")
    val: str | None = _f(None, "prepared validation dataset folder; none: no validation")
    holdout: int = _f(0, "training images set aside (fixed by seed) as validation instead of data.val")
    prepared_with: str = _f(
        "",
        "the `lsvr prepare` options data.train and data.val were made with, as typed"
        " (`--resize short --size 320 --max-size 500`): checked at the start, refused where the run would"
        " be wrong, warned of where merely different; '': no check",
    )
    crop: int = _f(0, "crop size fed to the model; 0: the model's default, capped at the image size")
    flip: bool = _f(True, "random horizontal mirror during training (the paper: p=0.5)")
    augment: Augmentation = _f(
        "crop", "crop (the paper: a random data.crop window) or rrc (RandomResizedCrop, resized to data.crop)"
    )
    rrc_scale: list[float] = _f([0.08, 1.0], "rrc: the window's area as a fraction of the image, [low, high]")
    rrc_ratio: list[float] = _f([0.75, 1.3333333], "rrc: the window's aspect ratio (width / height), [low, high]")
    normalize: Literal["mean_image", "channel"] = _f(
        "mean_image", "mean_image (the paper: subtract the mean image) or channel (mean/std)"
    )
    workers: int = _f(
        0, "background threads that read batches; 0: the job's CPUs (SLURM_CPUS_PER_TASK, affinity) per local process"
    )
    decode: Decode = _f("host", "JPEG sets: decode in the reading threads (host) or on the GPU (device: torchvision)")
    prefetch: int = _f(2, "batches read ahead of the training step")
    bad_records: StopOrSkip = _f(
        "stop",
        "a prepared JPEG record that does not decode: stop (one line naming the set and row, exit 2) or skip"
        " it (a warning per bad row; counted as bad_records in metrics.jsonl)",
    )
    # Mixup and CutMix (lsvr.data.mix): soft targets, drawn per global batch from the sample keys
    mixup: float = _f(
        0.0, "Mixup's alpha: batch x becomes lam*x + (1-lam)*x rolled by one, lam ~ Beta(alpha, alpha); 0: off"
    )
    cutmix: float = _f(
        0.0, "CutMix's alpha: a box of the batch rolled by one pasted in, area kept ~ Beta(alpha, alpha); 0: off"
    )
    mix_switch: float = _f(0.5, "with data.mixup and data.cutmix both on: the chance a batch takes CutMix, else Mixup")
    # progressive resizing (FFCV): lsvr.data.resolution; the keys are read together in _check_resolution
    res_start: int = _f(0, "progressive resizing: the training side (px) the ramp starts at; 0: off (data.crop)")
    res_end: int = _f(0, "progressive resizing: the side the ramp ends at, at most data.crop; 0: data.crop")
    res_epochs: list[float] = _f(
        [0.0, 0.0], "progressive resizing: the ramp's first and last epoch [a, b], 0 <= a <= b, from 0, fractions count"
    )
    res_multiple: int = _f(32, "progressive resizing: every side a multiple of this (few shapes; 4 suits 28 px)")
    # What validation sees (lsvr.train.validation): FFCV's train-test resolution gap, flip averaging.
    eval_size: int = _f(0, "validation: the shorter side before the centre crop; 0: the model's ratio (or stored side)")
    eval_crop: int = _f(0, "validation: the centre crop's side; 0: the training crop (data.crop)")
    val_flip: bool = _f(False, "validation: average the softmax of each image and its mirror (lsvr eval --flip)")
    val_shift: int = _f(
        0,
        "validation: half the weight on views shifted this many px up-left and down-right (airbench's translate"
        " TTA; fixed-shape sets at their stored side; lsvr eval --shift); 0: off",
    )
    # RandAugment (lsvr.data.randaugment): per-sample ops drawn from the sample keys
    randaugment: list[int] = _f(
        [], "RandAugment [num_ops, magnitude]: num_ops >= 1 ops per image at bin 0..30 of 31 (ViT: [2, 9]); []: off"
    )


@dataclass
class TrainConfig:
    global_batch: int = _f(256, "images per step over all ranks")
    epochs: int = _f(60, "training epochs")
    max_steps: int = _f(0, "stop after this many steps in all; 0: no limit")
    seed: int = _f(0, "seed of the weights, the epoch order and the augmentation")
    precision: Precision = _f("fp32", "fp32, bf16 or fp16 (autocast)")
    threads: int = _f(
        0, "CPU intra-op threads; 0: the cores the load leaves free (a resume: the checkpoint's; OMP_NUM_THREADS wins)"
    )
    deterministic: bool = _f(False, "torch.use_deterministic_algorithms: bitwise-repeatable steps (CPU)")
    accumulate: int = _f(1, "micro-batches per step (gradient accumulation)")
    device: Device = _f("auto", "auto, cpu or cuda")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy loss")
    channels_last: bool = _f(False, "run the model in channels_last memory format")
    cudnn_benchmark: bool = _f(
        True, "CUDA: let cuDNN time its convolution algorithms at the first steps and keep the fastest"
    )
    fused_lrn: bool = _f(True, "CUDA: AlexNet's LRN as one torch.compile'd kernel (compiled at the first step)")
    compile: CompileMode = _f(
        "none",
        "torch.compile the training model: none, default, max-autotune-no-cudagraphs; with CUDA graphs:"
        " reduce-overhead, max-autotune (not with train.accumulate > 1)",
    )
    log_every: int = _f(50, "steps between metrics.jsonl lines")
    val_from: int = _f(1, "the first epoch whose end is validated; the run's last is validated whatever this says")
    progress: bool = _f(True, "show a progress bar on stderr")
    data_wait_warn: float = _f(
        0.1, "warn (once a run) when waiting for data takes more than this share of a logging window; 0: never"
    )
    tensorboard: bool = _f(
        False, "also write the logged scalars to RUN/tb for TensorBoard (pip install lsvr[tensorboard])"
    )
    profile_steps: int = _f(
        0, "record this many steady-state steps with torch.profiler into RUN/profile (lsvr train --profile); 0: off"
    )
    # the EMA of the weights, Lookahead and the time budget (lsvr.train.ema, .lookahead, .budget)
    ema: float = _f(0.0, "EMA of the weights (BatchNorm statistics too): the decay per step, in (0, 1); 0: off")
    ema_halflife: float = _f(
        0.0, "EMA by a half-life in images instead (decay = 0.5 ** (global_batch / half-life)); 0: off"
    )
    ema_eval: bool = _f(
        True,
        "with an EMA: validation, the best checkpoint and eval/predict/export/init_from use the EMA's weights",
    )
    lookahead_steps: int = _f(
        0,
        "Lookahead: every this many updates the slow weights (BatchNorm statistics too) move"
        " train.lookahead_alpha of the way to the model's, and the model restarts from them; 0: off",
    )
    lookahead_alpha: float = _f(0.5, "Lookahead's step of the slow weights toward the fast ones, in (0, 1]")
    time_budget_s: float = _f(
        0.0,
        "end near this many seconds from the process's start: the total steps are fixed from the first"
        " steps' rate, then again from 50 steps at the last training side (at most what train.epochs and"
        " train.max_steps allow); 0: off",
    )


@dataclass
class OptimConfig:
    name: Optimizer = _f("sgd", "sgd (the paper's: lr inside the velocity) or adamw (torch's, decoupled decay)")
    lr: float = _f(0.01, "base learning rate (weights); biases get optim.bias_lr_mult times it")
    lr_steps: list[float] = _f([20, 40], "where the step schedule divides lr by 10, increasing, in optim.unit")
    schedule: ScheduleKind = _f(
        "step",
        "step (the paper), cosine, triangular (FFCV: up to optim.peak, then down) or linear (to optim.end_factor)",
    )
    warmup_epochs: float = _f(0.0, "linear warm-up from 0 over this many epochs, whatever optim.unit")
    momentum: float = _f(0.9, "sgd: momentum m in v = m*v - lr*(g + wd*W)")
    nesterov: bool = _f(False, "sgd: Nesterov momentum")
    betas: list[float] = _f([0.9, 0.999], "adamw: the moments' decay rates [beta1, beta2], each in [0, 1)")
    eps: float = _f(1e-8, "adamw: added to the second moment's root (> 0)")
    weight_decay: float = _f(0.0005, "weight decay of the weights (biases and norms: optim.decay_biases, decay_norms)")
    decay_biases: bool = _f(False, "weight decay on biases too (the paper: false; torchvision's classic: true)")
    decay_norms: bool = _f(
        False, "weight decay on norm scales (1-D weights) and ViT's class token and position embedding too"
    )
    bias_lr_mult: float = _f(2.0, "learning-rate multiplier of biases (the paper: 2; torchvision: 1)")
    scale_lr: Literal["none", "linear"] = _f(
        "none", "none (lr as given, whatever the world size) or linear (lr * global_batch / 256)"
    )
    # The schedule's unit and shape beyond step and cosine (lsvr.train.optim.Schedule).
    unit: ScheduleUnit = _f(
        "epoch", "how optim.lr_steps, optim.warmup and optim.peak count: epoch (fractions allowed) or step (whole)"
    )
    warmup: float = _f(0.0, "linear warm-up from 0 over this many optim.unit; not with optim.warmup_epochs")
    peak: float = _f(0.0, "triangular: where the lr peaks, in optim.unit (FFCV's lr_peak_epoch: 2 of 16-88 epochs)")
    start_factor: float = _f(1e-4, "triangular: the lr at the first step, a fraction of the base lr (FFCV: 1e-4)")
    end_factor: float = _f(0.0, "cosine, linear, triangular: the lr at the run's end, a fraction of the base lr")


@dataclass
class ParallelConfig:
    mode: Literal["ddp", "average"] = _f("ddp", "ddp (gradient all-reduce) or average (the paper's weight averaging)")
    average_every: int = _f(1, "steps between averages in average mode (1: the paper)")
    timeout_s: int = _f(600, "process-group timeout in seconds")
    bucket_mb: int = _f(25, "DDP gradient bucket size in MB")
    compress: Literal["none", "bf16"] = _f("none", "ddp gradient exchange in none (fp32) or bf16 (half the bytes)")


@dataclass
class CheckpointConfig:
    every_steps: int = _f(0, "steps between checkpoints; 0: at the end of each epoch only")
    keep: int = _f(2, "newest checkpoints kept (>= 2); the best by val top-1 is kept besides")


@dataclass
class GuardConfig:
    nonfinite: StopOrSkip = _f("stop", "on a NaN/Inf loss: stop (exit non-zero) or skip the update")
    max_skips: int = _f(10, "consecutive skipped steps before stopping")
    clip_norm: float = _f(0.0, "clip the gradient norm to this; 0: no clipping")


@dataclass
class SlurmConfig:
    requeue: bool = _f(
        False,
        "under SLURM: on SIGUSR1 or SIGTERM, save, `scontrol requeue` the job and exit 0 (resume with --resume auto)",
    )


@dataclass
class DebugConfig:
    """For tests only (lsvr.train.faults): make a run fail on purpose, to show it is handled."""

    fault: Fault = _f("none", "none, nan (the loss), die (kill -9), hang, kill_save (kill -9 in a save)")
    rank: int = _f(0, "the rank the fault strikes (first attempt only, not a torchrun restart)")
    step: int = _f(1, "the step (1-based) it strikes at; kill_save: the first save from this step on")
    point: KillPoint = _f("mid-write", "kill_save: mid-write, before-fsync, before-rename, before-latest, during-prune")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)  # last: `--keys` lists it apart

    def __post_init__(self) -> None:
        # the choices; the ranges and the keys that go together are lsvr.config_checks' (it imports
        # this module's types), run on every config read from a file or --set (config_file.from_dict)
        for key, value, allowed in _choice_fields(self):
            _choice(key, value, allowed)


def _choice_fields(cfg: Config) -> list[tuple[str, Any, tuple[str, ...]]]:
    """(key, value, allowed) of every field typed as a Literal."""
    found = []
    for name, cls in sections().items():
        section = getattr(cfg, name)
        for key, annotation in typing.get_type_hints(cls).items():
            if typing.get_origin(annotation) is Literal:
                found.append((f"{name}.{key}", getattr(section, key), typing.get_args(annotation)))
    return found


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"config: {key} must be one of {', '.join(allowed)}; got {value!r}")


def sections() -> dict[str, type]:
    return typing.get_type_hints(Config)


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)
