"""The paper's SGD (or AdamW), the parameter groups, and the learning-rate schedules.

The paper's rule (Ding et al. 2014, arXiv:1412.2302): v = m*v - lr*(g + wd*W); W += v, with
biases at 2x the learning rate and no weight decay. torch's SGD keeps lr OUTSIDE its momentum buffer
(buf = m*buf + g; W -= lr*buf), which is the same while lr is constant but not across an
lr drop: there the paper's velocity still carries the old lr for a while. PaperSGD
follows the paper exactly, with foreach kernels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lsvr.config import OptimConfig
from lsvr.errors import InputError


class PaperSGD(torch.optim.Optimizer):
    """Momentum SGD with the learning rate inside the velocity (the paper's update)."""

    def __init__(self, params, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, nesterov=False):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            if wd:
                grads = torch._foreach_add(grads, params, alpha=wd)  # g + wd*W
            velocity = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocity.append(state["velocity"])
            torch._foreach_mul_(velocity, m)
            torch._foreach_add_(velocity, grads, alpha=-lr)  # v = m*v - lr*(g + wd*W)
            if group["nesterov"]:
                torch._foreach_add_(params, velocity, alpha=m)  # W += m*v - lr*d
                torch._foreach_add_(params, grads, alpha=-lr)
            else:
                torch._foreach_add_(params, velocity)  # W += v
        return loss


# ViT's learned class token and position embedding: no decay where norms have none (timm's rule,
# its no_weight_decay() names them; torchvision's reference means the same by its custom keys).
# ConvNeXt's layer_scale, a (C, 1, 1) weight, stays decayed, as torchvision's recipe has it.
EMBEDDINGS = ("class_token", "pos_embedding")


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Three groups, in this order, empty ones left out: weights (lr, decay); biases
    (bias_lr_mult x lr, decay if optim.decay_biases); norms, i.e. other 1-D tensors (norm
    scales) and ViT's embeddings (lr, decay if optim.decay_norms). The defaults are the paper's
    rule; decay_biases, decay_norms and bias_lr_mult=1 torchvision's classic (decay on every
    parameter, one lr). Each group keeps its multiplier in "lr_mult".

    Which parameter goes where never depends on the flags, so a saved optimizer state fits;
    torch's load_state_dict then restores the saved groups' decay, lr_mult and momentum or
    betas, and a resume puts the config's back (lsvr.train.resume: a change of them is refused
    unless asked for, lsvr.train.changes); the schedule sets the lr anew each step."""
    weights, biases, norms = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("bias"):
            biases.append(p)
        elif p.ndim <= 1 or name.rsplit(".", 1)[-1] in EMBEDDINGS:
            norms.append(p)
        else:
            weights.append(p)
    wd = cfg.weight_decay
    groups = [
        {"params": weights, "weight_decay": wd, "lr_mult": 1.0},
        {"params": biases, "weight_decay": wd if cfg.decay_biases else 0.0, "lr_mult": cfg.bias_lr_mult},
        {"params": norms, "weight_decay": wd if cfg.decay_norms else 0.0, "lr_mult": 1.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """optim.name: the paper's SGD, or torch's AdamW (decay decoupled from the gradient's moments:
    W -= lr * wd * W beside the Adam step, each group with its own wd and lr)."""
    groups = parameter_groups(model, cfg)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps,
                                 weight_decay=0.0, foreach=True)  # fmt: skip
    return PaperSGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=0.0, nesterov=cfg.nesterov)


class Schedule:
    """The learning rate as a function of the step alone: a linear warm-up, then step, cosine,
    linear or triangular (FFCV's ramp up to optim.peak and down). A pure function of (step,
    total_steps, steps_per_epoch, cfg): a run whose length is fixed late builds it anew.

    replan (step, planned): a time budget fixed `planned` steps, then at `step` fixed
    total_steps instead (lsvr.train.budget): from that step on the rest of the planned schedule
    is stretched, or shrunk, to end at total_steps, so the lr keeps its value there and goes on
    from it without a jump.

    planned_steps: the run's length without a time budget (train.epochs, train.max_steps), where
    a budget fixed total_steps shorter: the step schedule's drops (optim.lr_steps) move to the
    same fractions of the budget's run, as cosine's end moves to its last step."""

    def __init__(self, cfg: OptimConfig, *, steps_per_epoch: int, total_steps: int, global_batch: int = 256,
                 replan: tuple[int, int] | None = None, planned_steps: int | None = None) -> None:  # fmt: skip
        self.cfg = cfg
        self.replan, self.run_steps = replan, max(1, total_steps)
        if replan is not None:
            total_steps = replan[1]  # the shape is the planned schedule's; factor() maps a step onto it
        # optim.scale_lr=linear: Goyal et al.'s rule, lr proportional to the global batch (256 as the unit).
        # The world size never enters: the global batch is the same at any world size.
        self.base_lr = cfg.lr * (global_batch / 256 if cfg.scale_lr == "linear" else 1.0)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = max(1, total_steps)
        self.warmup = warmup_steps(cfg, self.steps_per_epoch)
        # an epoch boundary e is step e * steps_per_epoch: "epoch >= e" as step // steps_per_epoch >= e was
        self.boundaries = [in_steps(cfg, s, self.steps_per_epoch) for s in cfg.lr_steps]
        self.planned_boundaries = self.boundaries
        if planned_steps and self.total_steps < planned_steps:  # a time budget's shorter run
            self.boundaries = [round(b * self.total_steps / planned_steps) for b in self.boundaries]
        self.peak = in_steps(cfg, cfg.peak, self.steps_per_epoch)

    def factor(self, step: int) -> float:
        """Multiplier of the base lr at `step` (0-based)."""
        if self.replan is not None and step > self.replan[0]:
            at, planned = self.replan
            step = at + (step - at) * (planned - at) / max(1, self.run_steps - at)  # (a float step)
        if step < self.warmup:
            return (step + 1) / self.warmup
        kind, end = self.cfg.schedule, self.cfg.end_factor
        if kind == "step":
            return 0.1 ** sum(step >= b for b in self.boundaries)
        if kind == "triangular":  # FFCV's np.interp(epoch, [0, peak, epochs], [start, 1, 0]), counted in steps
            if step < self.peak:
                return self.cfg.start_factor + (1.0 - self.cfg.start_factor) * step / self.peak
            return end + (1.0 - end) * (1.0 - min(1.0, (step - self.peak) / max(1, self.total_steps - self.peak)))
        progress = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        if kind == "linear":
            return end + (1.0 - end) * (1.0 - progress)  # exactly end_factor at the end
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))  # end 0: 0.5 * (1 + cos), exactly

    def drops(self) -> list[int]:
        """The step schedule's drops as run steps: the first step at each lower lr (after a
        replan's stretch)."""
        if self.replan is None:
            return list(self.boundaries)
        at, planned = self.replan
        stretch = max(1, self.run_steps - at) / max(1, planned - at)
        return [b if b <= at else at + math.ceil((b - at) * stretch - 1e-9) for b in self.boundaries]

    def budget_note(self) -> str | None:
        """One line where a time budget moved the step schedule's drops; None where it did not."""
        if self.cfg.schedule != "step" or self.boundaries == self.planned_boundaries:
            return None
        before, after = ", ".join(map(str, self.planned_boundaries)), ", ".join(map(str, self.drops()))
        return (f"lsvr train: optim.schedule=step: train.time_budget_s fixed {self.run_steps} steps, so the lr"
                f" drops of optim.lr_steps move from steps {before} to steps {after}")  # fmt: skip

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr for `step`; returns the base lr."""
        lr = self.base_lr * self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr


def in_steps(cfg: OptimConfig, value: float, steps_per_epoch: int) -> int:
    """A point of the schedule counted in optim.unit, as a step: epochs (fractions too) rounded
    to the nearest step, steps as they are."""
    return int(value) if cfg.unit == "step" else round(value * steps_per_epoch)


def warmup_steps(cfg: OptimConfig, steps_per_epoch: int) -> int:
    """The warm-up's length in steps: optim.warmup_epochs (epochs whatever the unit), else optim.warmup."""
    if cfg.warmup_epochs:
        return round(cfg.warmup_epochs * steps_per_epoch)
    return in_steps(cfg, cfg.warmup, steps_per_epoch)


def check_schedule(cfg: OptimConfig, *, steps_per_epoch: int, run_steps: int) -> None:
    """Refuse (InputError) a warm-up longer than the run or a peak outside it. run_steps: the run
    as planned (train.epochs of steps_per_epoch); train.max_steps may cut it shorter, as a smoke
    test does, without making the schedule wrong."""
    spe = max(1, steps_per_epoch)
    warmup = warmup_steps(cfg, spe)
    if warmup > run_steps:
        key = "optim.warmup_epochs" if cfg.warmup_epochs else "optim.warmup"
        value = cfg.warmup_epochs or cfg.warmup
        raise InputError(f"config: {key}={value:g} is {warmup} steps, longer than the run ({run_steps} steps)")
    peak = in_steps(cfg, cfg.peak, spe)
    if cfg.schedule == "triangular" and not 0 < peak < run_steps:
        raise InputError(f"config: optim.peak={cfg.peak:g} is step {peak}, outside the run (steps 1 to"
                         f" {run_steps - 1}; optim.unit={cfg.unit})")  # fmt: skip
