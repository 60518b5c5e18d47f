"""A trained model from a checkpoint, and single images seen as `lsvr eval` sees them: stored as
prepare stores them, then evaluation's view (the centred window, its mirror, the shifted crops)."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lsvr.data.augment import Augment
from lsvr.data.draws import Draws
from lsvr.data.image import (
    IMAGE_SUFFIXES,
    DecodeError,
    decode_file,
    looks_like_image,
    resize,
    resize_short,
    to_channels,
)
from lsvr.data.match import FIELDS, differences, require_match
from lsvr.data.readers import Batch, resize_window
from lsvr.errors import InputError
from lsvr.evaluate import check_shift, eval_views
from lsvr.models.registry import build_model
from lsvr.preprocess import Preprocess
from lsvr.runs import checkpoints
from lsvr.runs.record import CheckpointRecord


def load_model(
    path: Path, device: torch.device, *, crop: int | None = None
) -> tuple[nn.Module, CheckpointRecord, Path]:
    """The checkpoint's model in eval mode on device, its record, and the file read.

    path: a checkpoint file, a run folder (its latest checkpoint) or a `lsvr export` file.
    crop: the side of the images it will see (`lsvr eval --crop`; default the record's eval_crop)."""
    if path.suffix == ".onnx":  # a graph, not weights: only predict runs it (cli_model.cmd_predict)
        raise InputError(f"{path}: an ONNX export runs in `lsvr predict` only; give the checkpoint or its .safetensors")
    if path.suffix == ".safetensors":
        from lsvr.export import read_export

        if not path.is_file():
            raise InputError(f"{path}: no such file")
        found, state = path, read_export(path)
    else:
        found = checkpoints.find_valid(path)  # a run's newest checkpoint that loads, warning of any skipped
        if found is None:
            raise InputError(checkpoints.none_found(path, expected="a .pt file, a run folder or a .safetensors"))
        state = checkpoints.read(found)
    pre, name = state.preprocess, state.setting("model", "name")
    # a record normalised by a mean image needs it; one of channel statistics (resize "short") has none
    usable = (
        pre is not None and pre.eval_crop is not None and (pre.mean_image is not None or pre.normalize == "channel")
    )
    needed = {"model": state.weights, "config": name, "classes": state.classes, "preprocess": usable}
    missing = [what for what, there in needed.items() if not there]
    if missing:
        raise InputError(f"{path}: not an lsvr checkpoint (no {', '.join(missing)}); see `lsvr convert`")
    model = build_model(
        name,
        num_classes=len(pre.classes),
        in_channels=pre.channels,
        crop=crop or pre.eval_crop,
        dropout=0.0,
        width=state.setting("model", "width", 1.0),
        blurpool=state.setting("model", "blurpool", False),  # the same keys either way: the config says which
    )
    try:
        model.load_state_dict(state.weights)  # the EMA's where the run validated with them
    except RuntimeError as exc:
        if crop not in (None, pre.eval_crop):  # alexnet's fc6, a ViT's position embedding: sized by the crop
            raise InputError(f"--crop {crop}: model {name}'s weights fit {pre.eval_crop} px crops only") from None
        raise InputError(f"{path}: its weights do not fit model {name} ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), state, found


def check_eval_flags(eval_size: int | None, eval_crop: int | None, *, flip: bool | None = None,
                     crops: int = 1, shift: int | None = None) -> None:  # fmt: skip
    """`lsvr eval --resize R --crop C --flip --shift N --crops N` on their own: positive, the crop
    no larger than R, and no --flip or --shift with ten crops (they hold their own views)."""
    if shift is not None and shift < 0:
        raise InputError(f"--shift must be a whole number >= 0, got {shift}")
    if shift and crops != 1:
        raise InputError(f"--shift with --crops {crops}: the ten crops are views of their own; give one of them")
    for flag, value in (("--resize", eval_size), ("--crop", eval_crop)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be a positive whole number, got {value}")
    if eval_size and eval_crop and eval_crop > eval_size:
        raise InputError(f"--crop {eval_crop} is larger than --resize {eval_size}: the centre crop must fit")
    if flip and crops != 1:
        raise InputError(f"--flip with --crops {crops}: the ten crops hold their mirrors already; give one of them")


def eval_view(pre: Preprocess, *, eval_size: int | None = None, eval_crop: int | None = None,
              flip: bool | None = None, crops: int = 1, shift: int | None = None) -> Preprocess:  # fmt: skip
    """The record with `lsvr eval --resize R --crop C --flip --shift N` in place of its eval_size,
    eval_crop, eval_flip and eval_shift: torchvision's Resize(R) on the shorter side, then
    CenterCrop(C), and the mirror (flip None: the record's; ten crops: none, their mirrors are
    among them), and the shifted views (None: the record's; ten crops: none). The crop must fit."""
    check_eval_flags(eval_size, eval_crop, flip=flip, crops=crops, shift=shift)
    size, side = eval_size or pre.eval_size, eval_crop or pre.eval_crop
    if side > size:
        said = "--resize" if eval_size else "the checkpoint's eval size"
        raise InputError(f"--crop {side} is larger than {said} {size}: the centre crop must fit the resized image")
    mirror = (pre.eval_flip if flip is None else flip) and crops == 1
    moved = (pre.eval_shift if shift is None else shift) if crops == 1 else 0
    return dataclasses.replace(pre, eval_size=size, eval_crop=side, eval_flip=mirror, eval_shift=moved)


def augment_for(pre: Preprocess, device: torch.device) -> Augment:
    """The evaluation-time preprocessing stored in a checkpoint (no random crop or mirror).
    Augment takes the side of whole images from the mean image; a record without one (resize
    "short": channel statistics only) hands it windows already cut to eval_crop (eval_batch,
    the reader), so a zero image of that side stands in, unused by channel normalisation."""
    mean = pre.mean_image.float().numpy() if pre.mean_image is not None else np.zeros(
        (pre.eval_crop, pre.eval_crop, pre.channels), np.float32)  # fmt: skip
    return Augment(
        mean_image=mean,
        channel_mean=list(pre.channel_mean or ()),
        channel_std=list(pre.channel_std or ()),
        crop=pre.eval_crop,
        normalize=pre.normalize,
        device=device,
    )


# A model run on images of another size or channel count, or scored against another class list,
# gives no meaningful number: refused whatever the flag says.
ALWAYS_REFUSED = ("classes", "size", "channels")


def check_dataset(pre: Preprocess, dataset: Any, *, allow_mismatch: bool = False) -> list[str]:
    """Refuse a prepared set whose images differ from what the checkpoint's model was trained on;
    returns the differences let through (warnings) when allow_mismatch.

    Compared (lsvr.data.match): classes, size, channels, resize policy. A resize mismatch runs
    but scores another picture of each image (reported: 79.3% -> 38.1% top-1 for a center-trained
    model on a squash set), so only it may be let through with allow_mismatch. Normalisation is
    the checkpoint's own (its statistics travel with it) and applies to any set. Encoding is not
    compared: the checkpoint does not record it, and it barely matters (measured: a model trained
    on the raw 32 px Fashion-MNIST demo set scores 55.65% on the raw test set, 55.75% on the same
    images as quality-90 JPEG)."""
    expected, found = pre, Preprocess.from_dataset(dataset)
    names = ("checkpoint", "dataset")
    require_match(expected, found, where=dataset.path, names=names, fields=ALWAYS_REFUSED)
    if not allow_mismatch:
        require_match(expected, found, where=dataset.path, names=names,
                      fields=tuple(f for f in FIELDS if f not in ALWAYS_REFUSED))  # fmt: skip
        return []
    return differences(expected, found, names=names)


def image_paths(names: list[str]) -> list[Path]:
    """Each argument as a path, a folder replaced by the entries in it named like images, sorted
    by name: files, and links to nothing (load_image names them, as it would given directly);
    subfolders are not entered. A folder without any stays itself, for load_image to report;
    a class-folder tree is an InputError naming a subfolder to give instead."""
    out = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            out.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if (p.is_file() or _dangling(p)) and looks_like_image(p.name))
        if not inside:
            _refuse_tree(path)
        out.extend(inside or [path])
    return out


def _dangling(path: Path) -> bool:
    """A symbolic link whose target is missing (is_file and exists say False, as for nothing)."""
    return path.is_symlink() and not path.exists()


def _refuse_tree(folder: Path) -> None:
    """A folder of no images whose subfolders hold some (a class-folder tree): predict reads
    one folder's images, not a tree, so say which folder to give rather than "no images"."""
    holding = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if any(p.is_file() and looks_like_image(p.name) for p in sub.iterdir()):
            holding.append(sub.name)
    if holding:
        shown = ", ".join(holding[:3]) + (", ..." if len(holding) > 3 else "")
        raise InputError(
            f"{folder}: holds no images but subfolders that do ({shown}); give a folder of images,"
            f" e.g. {folder / holding[0]}"
        )


def load_image(path: Path, pre: Preprocess) -> np.ndarray:
    """One image file as `lsvr prepare` stores it in a set of the record's kind, before any JPEG
    encoding: decoded as prepare decodes it (a large JPEG at a reduced scale that keeps the
    shorter side at `size` or more), brought to `size` by the record's policy, (size, size, C)
    uint8; for resize "short", the shorter side to `size` (the longer at most max_size),
    (h, w, C). `eval_batch` then takes evaluation's view of it, as from a prepared set."""
    if path.is_dir():
        raise InputError(f"{path}: a folder with no image files ({' '.join(IMAGE_SUFFIXES)})")
    if _dangling(path):
        raise InputError(f"{path}: a link to {os.readlink(path)}, which does not exist")
    if not path.is_file():
        raise InputError(f"{path}: {'not a regular file' if path.exists() else 'no such image file'}")
    # prepare's decode (data/prepare.py, Converter): policies that shrink to `size` let a JPEG decode smaller;
    # a record of reduced_decode False (torchvision's weights: PIL decodes whole) decodes at full scale
    shrinks = pre.reduced_decode and pre.resize in ("squash", "center", "short", None)
    min_side = pre.size if shrinks else 0
    try:
        pixels = decode_file(path, min_side)
    except DecodeError as exc:
        raise InputError(f"{path}: {exc}") from None
    if pre.resize == "short":
        return to_channels(resize_short(pixels, pre.size, pre.max_size, interpolation=pre.interpolation), pre.channels)
    return to_channels(resize(pixels, pre.size, pre.resize or "squash"), pre.channels)


def check_view(pre: Preprocess, where: Path) -> None:
    """Refuse a record whose evaluation view eval_loader would refuse on a set of its kind (where:
    the checkpoint): a mean image resized, or shifted views of images not stored at eval_size."""
    stored = 0 if pre.resize == "short" else pre.size  # 0: shapes vary
    if pre.normalize == "mean_image" and pre.eval_size != stored:
        raise InputError(f"{where}: evaluation at {pre.eval_size} px with a mean image of {stored} px: a per-pixel"
                         " mean only fits the stored images")  # fmt: skip
    if pre.eval_shift:
        check_shift(where, stored=stored, eval_size=pre.eval_size, crop=pre.eval_crop, shift=pre.eval_shift)


def eval_batch(images: list[np.ndarray], pre: Preprocess) -> Batch:
    """Stored images (load_image) as `lsvr eval`'s loader hands them to `eval_views` for the
    record's one-view evaluation (lsvr.evaluate.eval_loader): each image's centred window,
    torchvision's Resize(eval_size) + CenterCrop(eval_crop) (Draws.centred), cut and resized
    as the reader does; with shifted views, the whole images, which must be stored at eval_size.
    Labels are zeros: there are none to score. check_view has refused the views that cannot be cut."""
    labels = torch.zeros(len(images), dtype=torch.int64)
    if pre.eval_shift:
        return Batch(torch.from_numpy(np.stack(images)), labels, None)  # (B, size, size, C)
    sizes = np.array([image.shape[:2] for image in images], np.int64)  # (B, 2)
    draws = Draws.centred(sizes, resize=pre.eval_size, crop=pre.eval_crop)
    windows = zip(*(t.tolist() for t in (draws.top, draws.left, draws.height, draws.width)), strict=True)
    # np.array: a contiguous, writable copy of the window (torch.from_numpy warns on Pillow's read-only arrays)
    cut = [resize_window(torch.from_numpy(np.array(image[top : top + h, left : left + w])), pre.eval_crop)
           for image, (top, left, h, w) in zip(images, windows, strict=True)]  # fmt: skip
    return Batch(torch.stack(cut), labels, draws)  # (B, crop, crop, C)


def load_images(paths: list[Path], pre: Preprocess, *, pool: Executor | None = None
                ) -> tuple[Batch | None, list[Path], list[str]]:  # fmt: skip
    """The readable files as one batch of evaluation's view (eval_batch; None if there is none),
    their paths, and one line for each file that could not be read: one bad file spoils no other.
    pool: threads that decode the files (lsvr.predict_batches); the order stays the paths'."""
    images, good, bad = [], [], []
    for path, loaded in zip(paths, (pool.map if pool else map)(lambda p: _try_load(p, pre), paths), strict=True):
        if isinstance(loaded, str):
            bad.append(loaded)
        else:
            images.append(loaded)
            good.append(path)
    return (eval_batch(images, pre) if images else None), good, bad


def _try_load(path: Path, pre: Preprocess) -> np.ndarray | str:
    """load_image's pixels, or the line saying why the file cannot be read."""
    try:
        return load_image(path, pre)
    except InputError as exc:
        return str(exc)


@torch.inference_mode()
def predict(model: nn.Module, augment: Augment, batch: Batch, device: torch.device, *,
            flip: bool = False, shift: int = 0) -> torch.Tensor:  # fmt: skip
    """Class probabilities (N, classes) of a batch from eval_batch, from the views `lsvr eval`
    scores (lsvr.evaluate.eval_views): the centred window (flip: the mean of it and its mirror's),
    or, whole images with a shift, the centre crops and the shifted ones."""
    draws = batch.draws.to(device) if batch.draws is not None else None
    on_device = Batch(batch.images.to(device), batch.labels, draws)
    views = eval_views(augment, on_device, flip=flip, shift=shift)
    return sum(weight * torch.softmax(model(view).float(), dim=1) for view, weight in views).cpu()
