"""A run's prepared sets against its preset's `data.prepared_with`, before the first step: a
difference that makes the run wrong is refused, one that is merely different is a warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsvr.config import Config
from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.models.registry import model_spec
from lsvr.prepared_with import FLAGS, KEY, prepared_with
from lsvr.train.preprocess_record import run_preprocess

# What the preset's views are of, for each --resize: what another policy takes from it.
VIEWS = {
    "short": "its RandomResizedCrop and shorter-side evaluation need each image's aspect kept",
    "squash": "its crops and evaluation are of whole images squashed to a square (the paper's)",
    "center": "its crops and evaluation are of each image's central square",
    "pad": "its crops and evaluation are of whole images on a square canvas, the original in its centre",
}


def open_set(cfg: Config, folder: str) -> PreparedDataset:
    """The prepared set at folder; a missing one of a preset that names its preparation is an
    InputError giving the prepare command (a user who ran a preset before preparing its sets)."""
    if cfg.data.prepared_with.strip() and not Path(folder).exists():
        raise InputError(f"{folder}: no such folder; make it with `lsvr prepare SOURCE {folder}"
                         f" {cfg.data.prepared_with}` (the preset's header has the whole command)")  # fmt: skip
    return PreparedDataset(folder)


def check_prepared(cfg: Config, ds: PreparedDataset) -> str | None:
    """Compare the set's meta.json with data.prepared_with: refuse (InputError, every rank alike)
    where the run would be wrong or not the preset's; the warning line (rank 0 says it) where
    it is merely different; None where it matches or the key is empty."""
    want = prepared_with(cfg.data.prepared_with)
    if want is None:
        return None
    meta, refused, warned = ds.meta, [], []
    fix = (f"prepare it with `lsvr prepare SOURCE OUT {cfg.data.prepared_with}` (the preset's header has the"
           f" whole command), or turn the check off with --set {KEY}=")  # fmt: skip
    for field, asked in want.items():
        have = meta.get(field)
        if field not in meta or have == asked:  # a set made before lsvr recorded the field: nothing to compare
            continue
        if field in ("size", "max_size") and meta.get("resize") != want["resize"]:
            continue  # a side of other images: the resize's line says the set must be made again
        if field == "jpeg_quality" and meta.get("encoding") != want["encoding"]:
            continue  # said by the encoding's line
        said = f"{_shown(field, have)} where {KEY} asks for {_shown(field, asked)}"
        if field == "channels":  # the model's first layer takes the set's channels: another model than the preset's
            refused.append(f"{said} (the model would take {have}-channel images)")
        elif field == "resize":  # the images themselves differ: every crop and the evaluation see other pixels
            refused.append(f"{said} ({VIEWS[asked]})")
        elif field == "size" and have < asked and (why := _too_small(cfg, ds, have)):
            refused.append(f"{said} ({why})")
        else:  # a larger side, another cap, encoding or quality: other bytes of the same images
            warned.append(said)
    if refused:
        raise InputError(f"{ds.path}: prepared with {'; '.join(refused)}; {fix}")
    if warned:
        return (f"lsvr train: warning: {ds.path}: prepared with {'; '.join(warned)}: the run goes on (the preset's"
                f" figures are for its own preparation; --set {KEY}= turns the check off)")  # fmt: skip
    return None


def _too_small(cfg: Config, ds: PreparedDataset, size: int) -> str | None:
    """Why a stored side below the preset's spoils its recipe, or None where only the bytes differ."""
    if ds.meta.get("resize") != "short":  # fixed-shape: the crop's share of each image is the augmentation
        return "the random crop and the evaluation's centre would cover more of each image than the preset's"
    crop = cfg.data.crop or min(model_spec(cfg.model.name).default_crop, size)
    need = max(crop, run_preprocess(cfg, ds, crop=crop).eval_size)
    if size < need:
        return f"the evaluation resizes the shorter side to {need}: smaller images would be upscaled"
    return None


def _shown(field: str, value: Any) -> str:
    if field == "max_size" and value is None:
        return "no --max-size"
    if field == "jpeg_quality" and value is None:
        return "no --quality (raw pixels)"
    return f"{FLAGS[field]} {value}"
