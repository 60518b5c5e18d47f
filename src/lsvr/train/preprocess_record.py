"""The preprocessing record a run writes into its checkpoints, from its config and its training
set: what eval and predict later apply (lsvr.preprocess.Preprocess)."""

from __future__ import annotations

import dataclasses

from lsvr.config import Config
from lsvr.data.dataset import PreparedDataset
from lsvr.models.registry import model_spec
from lsvr.preprocess import Preprocess


def run_preprocess(cfg: Config, train: PreparedDataset, *, crop: int) -> Preprocess:
    """The record a run writes into its checkpoints: the set's, the run's crop and normalisation,
    and the evaluation view. The paper's crop on a fixed-shape set evaluates the stored image's
    centre crop (as lsvr always did); rrc or a set of varying shape evaluates as torchvision
    does, Resize(eval_size) + CenterCrop(crop), eval_size keeping the model's declared ratio
    (256 / 224 for a 224 crop: 256) or, for a model that declares none, the set's stored side.
    data.eval_crop and data.eval_size take the place of the crop and eval_size where set, and
    data.val_flip adds the mirror, data.val_shift the shifted views (lsvr.train.validation checks the view)."""
    spec = model_spec(cfg.model.name)
    pre = Preprocess.from_dataset(train, crop=crop, normalize=cfg.data.normalize)
    variable = not train.shape[0]
    view = {"eval_crop": cfg.data.eval_crop or crop, "eval_flip": cfg.data.val_flip, "eval_shift": cfg.data.val_shift}
    if cfg.data.augment == "crop" and not variable:
        return dataclasses.replace(pre, augment="crop", eval_size=cfg.data.eval_size or pre.eval_size, **view)
    stored = int(train.meta["size"]) if variable else int(train.shape[0])
    ratio = round(view["eval_crop"] * spec.eval_resize / spec.eval_crop) if spec.eval_resize else stored
    return dataclasses.replace(pre, eval_size=cfg.data.eval_size or ratio, interpolation=spec.interpolation,
                               augment=cfg.data.augment, **view)  # fmt: skip
