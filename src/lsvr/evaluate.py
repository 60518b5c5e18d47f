"""Top-1 / top-5 over a loader: one centre view (the paper's crop, or torchvision's Resize +
CenterCrop), that view and its mirror (flip), the views shifted too (shift), or ten crops.

Knows no checkpoints: the engine and the CLI both hand it a model. Ten-crop averages the
softmax of the four corners, the centre and their mirrors; flip the softmax of the centre
view and its mirror, the same rule (FFCV's lr_tta sums logits instead: the averaged
probabilities keep the reported loss the NLL of what is scored); shift (airbench's translate
TTA) puts half the weight on the centre views and half on those moved `shift` px up-left and
down-right. Counts are summed over ranks through `reduce`, so every image is scored exactly
once whatever the world size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lsvr.data.augment import Augment
from lsvr.data.dataset import PreparedDataset
from lsvr.data.draws import Draws
from lsvr.data.loader import Loader
from lsvr.data.readers import Batch
from lsvr.errors import InputError
from lsvr.preprocess import Preprocess

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision name (fp32: disabled)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def input_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The dtype Augment hands the model: on a GPU the autocast dtype (the first layer casts to
    it anyway, so a float32 batch would be written and read for nothing); float32 elsewhere."""
    return AUTOCAST_DTYPES.get(precision, torch.float32) if device.type == "cuda" else torch.float32


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Loader,
    augment: Augment,
    *,
    crops: int = 1,
    flip: bool = False,
    shift: int = 0,
    precision: str = "fp32",
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    keep: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> dict[str, float]:
    """{"top1", "top5" (accuracy, percent), "loss" (mean NLL), "images"} over every image of a
    loader from `eval_loader`: its windows where it cuts them, else `crops` views of whole images;
    flip: each one-view image and its mirror (ten crops hold their mirrors already: flip adds none);
    shift: whole images' centre views and those shifted (`shift_views`).
    keep: called with each batch's scored (B, classes) probabilities and (B,) labels
    (`lsvr eval --report`: lsvr.report.collect)."""
    was_training = model.training
    model.eval()
    device = loader.device
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct1, correct5, nll, images
    for batch in loader.batches(epoch=0):
        if not len(batch.labels):
            continue
        views = eval_views(augment, batch, crops=crops, flip=flip, shift=shift)
        batch.release()  # the views are copies
        probs = 0
        for view, weight in views:
            with autocast(device, precision):
                probs = probs + weight * F.softmax(model(view).float(), dim=1)  # (B, classes); weights sum to 1
        labels = batch.labels
        if keep is not None:
            keep(probs, labels)
        k = min(5, probs.shape[1])
        top = probs.topk(k, dim=1).indices  # (B, k)
        hits = top == labels[:, None]
        totals[0] += hits[:, 0].sum()
        totals[1] += hits.any(dim=1).sum()
        totals[2] += -torch.log(probs.gather(1, labels[:, None]).clamp_min(1e-12)).sum()
        totals[3] += len(labels)
    totals = reduce(totals)
    model.train(was_training)
    n = max(1.0, float(totals[3]))
    return {
        "top1": 100.0 * float(totals[0]) / n,
        "top5": 100.0 * float(totals[1]) / n,
        "loss": float(totals[2]) / n,
        "images": int(totals[3]),
    }


def eval_views(augment: Augment, batch: Batch, *, crops: int = 1, flip: bool = False,
               shift: int = 0) -> list[tuple[torch.Tensor, float]]:  # fmt: skip
    """The (B, C, crop, crop) views a batch is scored on, each with its weight in the average:
    each image's evaluation window where the reader cut one, else the centre (with shift, the
    shifted views too) or ten crops of whole images; with flip, each mirrored too."""
    if batch.draws is not None:  # each image's evaluation window, cut (and resized) by the reader
        if shift:
            raise ValueError("shifted views are cut from whole images: eval_loader gives them for a shift")
        views = [augment.apply(batch.images, batch.draws)]  # a copy: the mirror below may work in place
        if flip:
            draws = batch.draws
            mirrored = Draws(
                draws.top, draws.left, torch.ones_like(draws.mirror), draws.crop, draws.height, draws.width
            )
            views.append(augment.apply(batch.images, mirrored))
        return [(view, 1 / len(views)) for view in views]
    if crops != 1:
        views = augment.ten_crops(batch.images)
        return [(view, 1 / len(views)) for view in views]
    return shift_views(augment, batch.images, flip=flip, shift=shift)


def shift_views(augment: Augment, images: torch.Tensor, *, flip: bool = False,
                shift: int = 0) -> list[tuple[torch.Tensor, float]]:  # fmt: skip
    """Whole (B, H, W, C) images' centre crop (and its mirror) sharing half the weight, and the
    same crops moved `shift` px up-left and down-right sharing the other half (airbench's
    translate test-time augmentation); shift 0: the centre views alone, all the weight."""
    mirrors = (False, True) if flip else (False,)
    centre = [augment.center(images, mirror=m) for m in mirrors]
    shifted = [augment.center(images, mirror=m, shift=d) for d in ((-shift, shift) if shift else ()) for m in mirrors]
    share = 0.5 if shifted else 1.0
    return [(v, share / len(centre)) for v in centre] + [(v, 0.5 / len(shifted)) for v in shifted]


def eval_loader(dataset: PreparedDataset, pre: Preprocess, *, crops: int = 1, batch_size: int,
                **options: Any) -> Loader:  # fmt: skip
    """The loader that shows each image as `pre` says evaluation sees it. One view: each image's
    centred window, torchvision's Resize(pre.eval_size) + CenterCrop(pre.eval_crop), cut by the
    reader (resized only where the window is not eval_crop wide: on a fixed-shape set evaluated
    at its stored side, the paper's centre crop, cut as before). Ten views (the corners and the
    centre, mirrored): whole images of a fixed-shape set at its stored side; elsewhere refused,
    as each view would need a resize of its own. options: Loader's (rank, world, workers...)."""
    stored = dataset.shape[0] if dataset.shape[0] == dataset.shape[1] else 0  # 0: shapes vary
    resized = pre.eval_size != stored
    if resized and pre.normalize == "mean_image":
        raise InputError(f"{dataset.path}: evaluation at {pre.eval_size} px (Resize + CenterCrop) with a mean image"
                         f" of {stored} px: a per-pixel mean only fits the stored images")  # fmt: skip
    if crops == 1 and pre.eval_shift:  # shifted views are cut from whole images at their stored side
        check_shift(dataset.path, stored=stored, eval_size=pre.eval_size, crop=pre.eval_crop, shift=pre.eval_shift)
        return Loader(dataset, batch_size=batch_size, shuffle=False, **options)
    if crops != 1:
        if resized:
            found = stored or "of varying shape"
            raise InputError(f"{dataset.path}: ten-crop evaluation needs images stored at the evaluation size"
                             f" ({pre.eval_size}), not {found}; evaluate one centre view")  # fmt: skip
        return Loader(dataset, batch_size=batch_size, shuffle=False, **options)
    return Loader(dataset, batch_size=batch_size, shuffle=False, crop=pre.eval_crop, window="centred",
                  resize=pre.eval_size, **options)  # fmt: skip


def check_shift(where: object, *, stored: int, eval_size: int, crop: int, shift: int) -> None:
    """Refuse shifted evaluation views that cannot be cut: only whole images stored at the
    evaluation size hold them, and each shifted crop must stay inside the image."""
    if eval_size != stored:
        found = f"{stored} px" if stored else "of varying shape"
        raise InputError(f"{where}: shifted views (shift {shift}) need images stored at the evaluation size"
                         f" ({eval_size}), not {found}; evaluate without a shift")  # fmt: skip
    margin = (stored - crop) // 2
    if shift > margin:
        raise InputError(f"{where}: a {crop} px crop shifted {shift} px leaves the {stored} px images (at most"
                         f" {margin} px fits)")  # fmt: skip
