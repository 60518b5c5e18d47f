"""What a checkpoint holds, typed: `CheckpointRecord`, written by `to_dict` and read back by
`from_dict`, the only code that knows a checkpoint's keys.

The saved layout is a flat dict of tensors, numbers, strings, lists and dicts (torch.load's
weights_only=True reads nothing else). Format 2 adds `format` and a versioned preprocess
record; format 1, the unversioned checkpoints of earlier lsvr versions (the same keys, the
classes beside a plain preprocess dict, no `format`), loads as it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from lsvr.errors import InputError
from lsvr.preprocess import Preprocess

FORMAT = 2
# who wrote it; `source`: what convert read, `weights`: the torchvision weights it held (ResNet50_Weights.IMAGENET1K_V2)
PROVENANCE = ("lsvr_version", "commit", "torch", "source", "weights")

# field -> the types a saved value may have (None is always allowed): a file holding another
# thing under a known key is refused, naming the key, rather than failing deep in a reader.
TYPES: dict[str, tuple[type, ...]] = {
    "model": (dict,), "optimizer": (dict,), "scheduler": (dict,), "scaler": (dict,), "step": (int,),
    "epoch": (int,), "loader": (dict,), "rng": (dict,), "config": (dict,), "metrics": (dict,),
    "best_top1": (int, float), "threads": (int,), "world": (int,), "run_id": (str,), "format": (int,),
    "ema": (dict,), "budget_steps": (int,), "budget_replan": (list,), "lookahead": (dict,),
}  # fmt: skip


def is_checkpoint(state: Any) -> bool:
    """A loaded file is an lsvr checkpoint (weights under `model`), not a bare state_dict."""
    return isinstance(state, dict) and isinstance(state.get("model"), dict)


@dataclass
class CheckpointRecord:
    """One checkpoint. Only `model` is needed to read one; a resume needs the training state
    (optimizer, scaler, loader position, rng), eval and predict the config's model section and
    the preprocess record."""

    model: dict[str, torch.Tensor] = field(default_factory=dict)  # the unwrapped model's state_dict
    step: int = 0  # optimizer steps taken
    epoch: int = 0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, int] = field(default_factory=dict)  # the lr schedule's position: {"step": N}
    scaler: dict[str, Any] = field(default_factory=dict)  # {} when fp16's scaler is off
    loader: dict[str, int] = field(default_factory=dict)  # epoch, step, sample, global_batch
    rng: dict[str, Any] | None = None  # lsvr.train.state.RNGs().state_dict()
    config: dict[str, Any] = field(default_factory=dict)  # lsvr.config.to_dict of the run's config
    preprocess: Preprocess | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the last validation's
    best_top1: float | None = None
    threads: int | None = None  # torch's intra-op threads: another count changes the bits
    world: int | None = None
    run_id: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)  # PROVENANCE keys
    format: int = FORMAT
    # train.ema: the average's state_dict; train.lookahead_steps: the slow weights (by state_dict
    # name); train.time_budget_s: the total steps the budget fixed
    # and, once it planned again, [the step it did so, the first plan's total] (Schedule's replan).
    # Left out of the file where None, so a run without them writes what it wrote before.
    ema: dict[str, torch.Tensor] | None = None
    lookahead: dict[str, torch.Tensor] | None = None
    budget_steps: int | None = None
    budget_replan: list[int] | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.preprocess.classes) if self.preprocess is not None else []

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to evaluate: the EMA's where the run validated with them (train.ema_eval),
        else the model's. Every reader for inference (eval, predict, export, info, init_from) takes these."""
        if self.ema is not None and self.setting("train", "ema_eval", True):
            return self.ema
        return self.model

    def setting(self, section: str, key: str, default: Any = None) -> Any:
        """A key of the config the checkpoint was written with (`setting("model", "name")`),
        or default where that config has no such key (an older lsvr's)."""
        part = self.config.get(section)
        return part.get(key, default) if isinstance(part, dict) else default

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["preprocess"] = self.preprocess.to_dict() if self.preprocess is not None else None
        out["classes"] = self.classes  # beside the record too, where format 1 kept them
        del out["provenance"]
        out.update(self.provenance)  # flat, as format 1 wrote them
        for key in ("ema", "lookahead", "budget_steps", "budget_replan"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, state: Any, *, where: Any) -> CheckpointRecord:
        """The record of a loaded checkpoint (format 1 or 2); an InputError naming `where` and
        the key when the file holds something else."""
        if not isinstance(state, dict):
            raise InputError(f"{where}: not a checkpoint (holds a {type(state).__name__})")
        version = state.get("format", 1)
        if isinstance(version, int) and version > FORMAT:
            raise InputError(f"{where}: a checkpoint of format {version}, written by a newer lsvr (this one reads"
                             f" up to {FORMAT})")  # fmt: skip
        for key, types in TYPES.items():
            value = state.get(key)
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                raise InputError(f"{where}: not a checkpoint lsvr can read ({key} is a {type(value).__name__})")
        values = {k: state[k] for k in TYPES if state.get(k) is not None}
        pre = state.get("preprocess")
        if pre is not None:
            try:
                values["preprocess"] = Preprocess.from_dict(pre, classes=list(state.get("classes") or []))
            except (TypeError, ValueError) as exc:
                raise InputError(f"{where}: not a checkpoint lsvr can read ({exc})") from None
        values["provenance"] = {k: state[k] for k in PROVENANCE if isinstance(state.get(k), str)}
        values["format"] = FORMAT
        return cls(**values)
