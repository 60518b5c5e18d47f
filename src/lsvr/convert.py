"""`lsvr convert WEIGHTS.pth OUT.pt --model NAME [--weights IMAGENET1K_V2]`: a torchvision
weights file of a zoo model -> an lsvr checkpoint for eval and predict, its preprocessing record
the evaluation transform those weights were published with (lsvr.models.torchvision_weights)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from lsvr.config import Config, to_dict
from lsvr.errors import InputError
from lsvr.folders import write_atomic
from lsvr.models.registry import build_model
from lsvr.models.torchvision_weights import WEIGHTS, PublishedWeights
from lsvr.models.weights import load_matching, read_state_dict
from lsvr.preprocess import Preprocess
from lsvr.runs.provenance import provenance
from lsvr.runs.record import CheckpointRecord


def pick_weights(model_name: str, weights: Path, named: str | None) -> tuple[PublishedWeights, str]:
    """Which published weights the file holds, and how that was decided: `--weights` (the enum
    member, IMAGENET1K_V2, or its full name), else the file name torchvision downloads them
    under (resnet50-11ad3fa6.pth is IMAGENET1K_V2), else the model's first (V1, or its only)."""
    if model_name not in WEIGHTS:
        raise InputError(f"--model {model_name}: no torchvision weights for it; those with: {', '.join(WEIGHTS)}")
    known = WEIGHTS[model_name]
    if named is not None:
        found = next((w for w in known if named in (w.member, w.name)), None)
        if found is None:
            raise InputError(f"--weights {named}: not one of {model_name}'s: {', '.join(w.member for w in known)}")
        return found, "named by --weights"
    by_file = next((w for w in known if w.file == weights.name), None)
    if by_file is not None:
        return by_file, f"torchvision's file name {weights.name}"
    others = [w.member for w in known[1:]]
    how = "the default" + (f"; --weights {' or '.join(others)} for another" if others else "")
    return known[0], how


def record_for(published: PublishedWeights, classes: list[str]) -> Preprocess:
    """The preprocessing record of torchvision's evaluation transform for these weights:
    Resize(resize) of the shorter side of the fully decoded image (a PIL image there: no reduced
    JPEG decode), CenterCrop(crop), Normalize(mean, std) in lsvr's 0..255 units."""
    return Preprocess(
        classes=tuple(classes), size=published.resize, channels=3, resize="short", crop=published.crop,
        eval_size=published.resize, eval_crop=published.crop, interpolation=published.interpolation,
        reduced_decode=False, augment=None, normalize="channel",
        channel_mean=tuple(m * 255 for m in published.mean), channel_std=tuple(s * 255 for s in published.std),
    )  # fmt: skip


def convert(weights: Path, out: Path, *, model_name: str, classes: list[str] | None,
            weights_name: str | None = None) -> dict:  # fmt: skip
    """Write OUT as a checkpoint of `model_name` holding the file's tensors and the record of its
    published weights. A file of another architecture: InputError naming the first key that
    differs (load_matching); the class count is the file's, `classes` name them (default 0..N-1)."""
    published, how = pick_weights(model_name, weights, weights_name)
    state = read_state_dict(weights)
    # the class count: the classifier's bias, the last tensor of a torchvision state_dict (googlenet's
    # aux heads come before its fc); a file of another layout is refused by load_matching, naming a key
    last = next(reversed(state.values()), None)
    count = last.shape[0] if last is not None and last.dim() == 1 else 1000
    names = classes or [str(i) for i in range(count)]
    if len(names) != count:
        raise InputError(f"--classes: {len(names)} names for a classifier of {count} classes")
    model = build_model(model_name, num_classes=count, in_channels=3, crop=published.crop)
    try:
        load_matching(model, state, source=str(weights))  # the class count is the file's: nothing left out
    except InputError as exc:
        owner = next(((m, w.name) for m, known in WEIGHTS.items() for w in known if w.file == weights.name), None)
        if owner is None:
            raise
        raise InputError(f"{exc} ({weights.name} is torchvision's file of {owner[1]}: --model {owner[0]})") from None
    cfg = Config()
    cfg.model.name = model_name
    about = {**provenance(), "source": str(weights), "weights": published.name}
    record = CheckpointRecord(model=model.state_dict(), config=to_dict(cfg), preprocess=record_for(published, names),
                              provenance=about)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(record.to_dict(), buffer)
    try:
        write_atomic(out, buffer.getvalue())
    except OSError as exc:
        raise InputError(f"{out}: could not be written ({exc.strerror or exc})") from None
    return {"checkpoint": str(out), "classes": count, "model": model_name, "weights": published, "how": how}


def describe(result: dict) -> str:
    """convert's one line: what was written, which weights and why, their preprocessing and the
    published accuracy `lsvr eval` should reproduce."""
    w: PublishedWeights = result["weights"]
    published = f"published top-1 {w.acc1:.3f}%" if w.acc1 is not None else "no published accuracy (features only)"
    return (f"wrote {result['checkpoint']} ({result['model']}, {result['classes']} classes; {w.name}: {result['how']};"
            f" shorter side {w.resize}, centre {w.crop}, {w.interpolation}; {published})")  # fmt: skip
