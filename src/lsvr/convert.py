"""`lsvr convert`: a torchvision AlexNet weights file -> an lsvr checkpoint for eval/predict."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from lsvr.config import Config, to_dict
from lsvr.errors import InputError
from lsvr.folders import write_atomic
from lsvr.models.registry import build_model
from lsvr.models.weights import load_matching, read_state_dict
from lsvr.preprocess import Preprocess
from lsvr.runs.provenance import provenance
from lsvr.runs.record import CheckpointRecord

# torchvision's ImageNet preprocessing: shorter side 256 (bilinear), centre crop 224, channel mean/std.
TV_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
TV_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def convert(weights: Path, out: Path, *, model_name: str, classes: list[str] | None) -> dict:
    if model_name != "alexnet_tv":
        raise InputError(f"--model {model_name}: only alexnet_tv takes torchvision weights")
    state = read_state_dict(weights)
    fc = state.get("classifier.6.weight")
    if fc is None:
        raise InputError(f"{weights}: no classifier.6.weight, not a torchvision AlexNet")
    count = fc.shape[0]
    classes = classes or [str(i) for i in range(count)]
    if len(classes) != count:
        raise InputError(f"--classes: {len(classes)} names for a classifier of {count} classes")
    model = build_model(model_name, num_classes=count, in_channels=3, crop=224)
    load_matching(model, state, source=str(weights))  # the class count is the file's: nothing left out
    cfg = Config()
    cfg.model.name = model_name
    pre = Preprocess(
        classes=tuple(classes), size=256, channels=3, resize="center", crop=224, eval_size=256, eval_crop=224,
        interpolation="bilinear", normalize="channel", channel_mean=tuple(TV_MEAN), channel_std=tuple(TV_STD),
        mean_image=torch.from_numpy(np.tile(np.float32(TV_MEAN), (256, 256, 1))),
    )  # fmt: skip
    record = CheckpointRecord(model=model.state_dict(), config=to_dict(cfg), preprocess=pre,
                              provenance={**provenance(), "source": str(weights)})  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(record.to_dict(), buffer)
    try:
        write_atomic(out, buffer.getvalue())
    except OSError as exc:
        raise InputError(f"{out}: could not be written ({exc.strerror or exc})") from None
    return {"checkpoint": str(out), "classes": count, "model": model_name}
