"""What validation sees, as a run's config sets it: its resolution (data.eval_size, data.eval_crop:
FFCV's train-test resolution gap, Touvron et al. 2019's FixRes), flip averaging (data.val_flip) and
shifted views (data.val_shift, airbench's translate TTA).

The view is written into the run's preprocess record (lsvr.train.preprocess_record.run_preprocess), so
`lsvr eval` of the run scores as its validation did. Each check here is an InputError before
any process group exists.
"""

from __future__ import annotations

import torch

from lsvr.config import Config
from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.evaluate import check_shift
from lsvr.models.registry import build_model
from lsvr.preprocess import Preprocess


def check_eval_view(cfg: Config, pre: Preprocess, *, train: PreparedDataset, crop: int) -> None:
    """Refuse an evaluation view that cannot be cut or that the model cannot take: a centre crop
    larger than the side it is cut from, a resize under a per-pixel mean image, a crop the
    model's classifier was not built for. A resize up is allowed: the reader's window is then
    smaller than the crop and interpolated up (lsvr.data.readers.resize_window)."""
    if pre.eval_crop > pre.eval_size:
        said = "data.eval_size" if cfg.data.eval_size else f"the evaluation size (the stored side of {train.path})"
        raise InputError(f"data.eval_crop={pre.eval_crop} is larger than {said}, {pre.eval_size}: the centre crop"
                         " must fit; set data.eval_size")  # fmt: skip
    stored = int(train.shape[0])  # 0: a set of varying shape (no mean image: check_windows refused it)
    if cfg.data.normalize == "mean_image" and pre.eval_size != stored:
        raise InputError(f"data.eval_size={pre.eval_size} resizes the {stored} px images of {train.path}: a mean"
                         " image only fits the stored images; use data.normalize=channel")  # fmt: skip
    if pre.eval_shift:  # data.val_shift: crops moved within whole images at their stored side
        check_shift(train.path, stored=stored, eval_size=pre.eval_size, crop=pre.eval_crop, shift=pre.eval_shift)
    if pre.eval_crop != crop:
        check_model_takes(cfg, channels=int(train.shape[2]), crop=crop, side=pre.eval_crop)


def check_model_takes(cfg: Config, *, channels: int, crop: int, side: int) -> None:
    """Refuse an evaluation side the model, built for `crop` px training crops, cannot take: a
    classifier sized by the crop (alexnet's and alexnet_small's fc6, ViT's position embedding)
    takes another side only where the features come out the same size. One image's forward on
    the CPU, the global generator left as it was; run only where the side is not the crop. Its
    cost here (one thread, build and forward): alexnet_small 0.06 s, resnet18 0.9 s, vgg11 8.8 s;
    the meta device's first forward alone took 3.2 s, whatever the model."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model = build_model(cfg.model.name, num_classes=2, in_channels=channels, crop=crop, width=cfg.model.width)
        try:
            model.eval()(torch.zeros(1, channels, side, side))  # (1, C, side, side)
        except (RuntimeError, ValueError, AssertionError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"data.eval_crop={side}: model {cfg.model.name}, built for {crop} px crops, cannot"
                             f" take {side} px ({reason})") from None  # fmt: skip
