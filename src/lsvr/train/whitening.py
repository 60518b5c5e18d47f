"""model.whiten in a run: the images the first conv is whitened from (lsvr.models.whiten)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lsvr.data.augment import Augment
from lsvr.errors import InputError
from lsvr.models.whiten import first_conv, images_needed, whiten
from lsvr.train.setup import RunInputs

MAX_IMAGES = 5000


def whiten_first_conv(model: nn.Module, inputs: RunInputs, augment: Augment, *, seed: int) -> str:
    """Whiten and freeze the model's first conv from the patches of up to MAX_IMAGES training
    images' centre crops, normalised as training feeds them and drawn by seed (every rank, and a
    resume before it loads its weights, computes the same); returns the line that says so."""
    if inputs.train.variable:
        raise InputError(f"model.whiten: {inputs.train.path} holds images of varying shape (prepare --resize short);"
                         " whitening reads sets of one image shape")  # fmt: skip
    try:
        conv = first_conv(model)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    n = images_needed(conv, inputs.crop, min(MAX_IMAGES, len(inputs.train_rows)))
    rows = np.sort(np.random.default_rng([seed, 0x3417E]).choice(inputs.train_rows, n, replace=False))
    dtype, augment.dtype = augment.dtype, torch.float32  # the statistics from float32 pixels, bf16 run or not
    try:
        images = augment.center(torch.from_numpy(inputs.train.read(rows)).to(conv.weight.device))
    finally:
        augment.dtype = dtype
    pairs = whiten(conv, images.float())
    return f"lsvr train: model.whiten: {2 * pairs} filters of the first conv from {n} training images, frozen"
