"""Progressive resizing (data.res_*) for a run: the ramp the loader follows, and what must hold
before the first step (config.py has checked the keys on their own).

The windows are drawn as without it (the paper's data.crop square, or RandomResizedCrop's)
and brought to the ramp's side instead of data.crop; evaluation keeps its own view. So the
ramp ends at most at data.crop, and never above the prepared images: past them it would
only upscale. A model whose head is sized from the crop (alexnet, alexnet_small* outside a
narrow band, ViT's position embedding) cannot take the smaller sides: refused here, after a
forward pass of one image at each side.
"""

from __future__ import annotations

import torch

from lsvr.config import Config, DataConfig
from lsvr.data.dataset import PreparedDataset
from lsvr.data.resolution import ResolutionRamp
from lsvr.errors import InputError
from lsvr.models.registry import build_model


def resolution_ramp(data: DataConfig, *, crop: int) -> ResolutionRamp | None:
    """The ramp data.res_* describe, res_end 0 meaning the crop; None where data.res_start is
    0 (off: every batch at the crop, as before)."""
    if not data.res_start:
        return None
    first, last = data.res_epochs
    return ResolutionRamp(data.res_start, data.res_end or crop, float(first), float(last), data.res_multiple)


def check_resolution(cfg: Config, train: PreparedDataset, *, crop: int) -> str | None:
    """Refuse a ramp the crop, the set or the model cannot follow (InputError, one line); the
    line to say at the start where progressive resizing is on, else None."""
    ramp = resolution_ramp(cfg.data, crop=crop)
    if ramp is None:
        return None
    end = "data.res_end" if cfg.data.res_end else "data.res_end=0, i.e. data.crop"
    if ramp.end % ramp.multiple:
        raise InputError(f"config: {end} ({ramp.end}) is not a multiple of data.res_multiple={ramp.multiple}")
    if ramp.start > ramp.end:
        raise InputError(f"config: data.res_start={ramp.start} > {end} ({ramp.end}): the resolution must not decrease")
    if ramp.end > crop:
        raise InputError(f"config: data.res_end={ramp.end} exceeds data.crop={crop}: the ramp ends at most at the"
                         " crop (the largest window drawn, and what evaluation sees); raise data.crop")  # fmt: skip
    short = int(train.meta["size"]) if not train.shape[0] else min(train.shape[:2])
    if ramp.end > short:
        raise InputError(f"config: {end} ({ramp.end}) exceeds the images of {train.path} (shorter side {short}):"
                         " above the prepared size a window is only upscaled")  # fmt: skip
    if cfg.data.normalize == "mean_image":
        raise InputError("data.normalize=mean_image has no meaning with progressive resizing (data.res_start):"
                         " the windows are resized, a per-pixel mean is not; use data.normalize=channel")  # fmt: skip
    _model_takes(cfg, train, crop=crop, sides=ramp.sides())
    return ramp.describe()


def _model_takes(cfg: Config, train: PreparedDataset, *, crop: int, sides: list[int]) -> None:
    """The model built for `crop` runs one image through at each side, on the CPU: on the meta
    device the first initialiser or forward imports torch._dynamo, 5 s here, which a run
    without train.compile never pays otherwise; the CPU build is milliseconds for the small
    models and a second or two for the ImageNet ones. The global RNG is left as it was."""
    m = cfg.model
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model = build_model(m.name, num_classes=len(train.classes), in_channels=train.shape[2], crop=crop,
                            dropout=m.dropout, width=m.width, zero_init_residual=m.zero_init_residual)  # fmt: skip
        model.eval()
        for side in sides:
            try:
                model(torch.zeros(1, train.shape[2], side, side))
            except (RuntimeError, ValueError) as exc:
                why = str(exc).splitlines()[0]
                pooled = "quicknet, resnet*, vgg*, googlenet, convnext_tiny, alexnet_tv"
                raise InputError(f"config: model.name={m.name} built for data.crop={crop} does not take {side} px"
                                 f" images ({why}); progressive resizing needs a model that pools to a fixed size"
                                 f" ({pooled})") from None  # fmt: skip
