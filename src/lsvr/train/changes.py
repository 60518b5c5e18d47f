"""What a resume may change of the run it continues (lsvr train --resume ... --set KEY=VALUE).

Every setting the config gives otherwise than the checkpoint's config is said, in one line.
Those that change the run's arithmetic from the checkpoint on (the learning rate, the decay,
the momentum, the augmentation, the seed, the precision, an EMA turned on...) are refused unless
`lsvr train --allow-changes` asks for them: a resume that quietly trains another run is the
failure this guards against (optim.lr=5 at resume once gave 18.75% where the run had 60%+).
What is accepted is applied: the optimizer's groups take the config's decay, momentum and
multipliers (lsvr.train.resume), an EMA turned on starts from the checkpoint's weights.

Free to change (said, never refused): where and how fast the run computes, what it logs and
keeps, what validation scores, and the run's length (train.epochs, train.max_steps,
train.time_budget_s: the way to extend a run).
"""

from __future__ import annotations

import json
from typing import Any

from lsvr.config import Config, to_dict
from lsvr.errors import InputError

# Settings that leave every training step's arithmetic as it was (or that fix only its length).
FREE = {
    "checkpoint.every_steps", "checkpoint.keep", "slurm.requeue",
    "train.log_every", "train.progress", "train.data_wait_warn", "train.tensorboard", "train.profile_steps",
    "train.threads", "train.deterministic", "train.device", "train.channels_last", "train.cudnn_benchmark",
    "train.fused_lrn", "train.compile", "data.workers", "data.decode", "data.prefetch", "data.bad_records",
    "parallel.timeout_s", "parallel.bucket_mb", "guard.nonfinite", "guard.max_skips",
    "data.train", "data.val", "data.eval_size", "data.eval_crop", "data.val_flip", "data.val_shift",
    "train.val_from", "train.ema_eval", "model.init_from", "data.prepared_with",
    "train.epochs", "train.max_steps", "train.time_budget_s",
}  # fmt: skip
# Checked on their own, with their own messages (lsvr.train.setup.resume_fits, lsvr.train.resume):
# the model (its width: the weights' shapes), the optimizer's kind, the images the model sees,
# the batch the position counts.
CHECKED_ELSEWHERE = {"model.name", "model.width", "optim.name", "data.crop", "data.normalize", "train.global_batch"}
# Tests' failures on purpose: the attempt they strike is the first, the resume runs without them.
IGNORED_SECTIONS = {"debug"}
# Settings whose change means more than its value says: turned on, turned off.
AVERAGES = {"train.ema": "the EMA", "train.ema_halflife": "the EMA", "train.lookahead_steps": "Lookahead"}


def changed_settings(cfg: Config, saved: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, the checkpoint's value, the config's value) for each setting that differs, in the
    config's order. A key the checkpoint's config lacks (an older lsvr's) is passed over."""
    changes = []
    for section, values in to_dict(cfg).items():
        before = saved.get(section)
        if section in IGNORED_SECTIONS or not isinstance(before, dict):
            continue
        for key, value in values.items():
            name = f"{section}.{key}"
            if key in before and name not in CHECKED_ELSEWHERE and not _same(before[key], value):
                changes.append((name, before[key], value))
    return changes


def check_changes(cfg: Config, saved: dict[str, Any], *, where: object, allowed: bool, forked: bool) -> str | None:
    """The one line that says what differs from the checkpoint's config (None: nothing). A change
    of the run's arithmetic is an InputError unless `allowed` (--allow-changes) or `forked` (a new
    run from another run's checkpoint, which is the user's to set up)."""
    changes = changed_settings(cfg, saved)
    if not changes:
        return None
    arithmetic = [c for c in changes if c[0] not in FREE]
    if arithmetic and not (allowed or forked):
        raise InputError(
            f"{where}: resuming with settings that change the run's arithmetic: {_listed(arithmetic)}; pass"
            " --allow-changes to continue with them (the run will not be the one the checkpoint began),"
            " or set them back to the checkpoint's values"
        )
    what = "a new run from the checkpoint" if forked else "resuming"
    asked = " (--allow-changes)" if arithmetic and not forked else ""
    return f"lsvr train: {what} with settings changed from the checkpoint's{asked}: {_listed(changes)}"


def _listed(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key} {_shown(before)} -> {_shown(after)}{_meaning(key, before, after)}"
                     for key, before, after in changes)  # fmt: skip


def _meaning(key: str, before: Any, after: Any) -> str:
    """What the change does to the run, where its values do not say it."""
    if key == "train.seed":
        return " (another epoch order and augmentation)"
    if key in AVERAGES and not before:
        return f" ({AVERAGES[key]} starts from the checkpoint's weights)"
    if key in AVERAGES and not after:
        return f" (the checkpoint's {AVERAGES[key].removeprefix('the ')} state is dropped)"
    return ""


def _shown(value: Any) -> str:
    return value if isinstance(value, str) and value else json.dumps(value)


def _same(before: Any, after: Any) -> bool:
    """Equal as config values: a list and a tuple of the same items, 1 and 1.0."""
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
        return len(before) == len(after) and all(_same(a, b) for a, b in zip(before, after, strict=True))
    return before == after
