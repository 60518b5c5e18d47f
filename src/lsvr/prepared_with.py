"""`data.prepared_with`: the `lsvr prepare` options a preset's sets must have been made with,
read by prepare's own parser and checked against each set's meta.json before the first step.

A preset's recipe holds for the images it was written for: a ResNet preset (RandomResizedCrop,
shorter side 256 then centre 224 for evaluation) trained on a squash 256 set ran without a
word and scored another recipe. Where a difference makes the run wrong or not what the preset
claims, the start is refused (one line: the set, the option, both values, the fix); where it is
merely different (another encoding, a larger stored side), one warning line and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsvr.errors import InputError

if TYPE_CHECKING:
    from lsvr.config import Config
    from lsvr.data.dataset import PreparedDataset

KEY = "data.prepared_with"
FLAGS = {"channels": "--channels", "resize": "--resize", "size": "--size", "max_size": "--max-size",
         "encoding": "--encoding", "jpeg_quality": "--quality"}  # fmt: skip
# What the preset's views are of, for each --resize: what another policy takes from it.
VIEWS = {
    "short": "its RandomResizedCrop and shorter-side evaluation need each image's aspect kept",
    "squash": "its crops and evaluation are of whole images squashed to a square (the paper's)",
    "center": "its crops and evaluation are of each image's central square",
    "pad": "its crops and evaluation are of whole images on a square canvas, the original in its centre",
}


def recorded_options(args: argparse.Namespace) -> dict[str, Any]:
    """What a prepare of these parsed options writes into meta.json (the fields a set records);
    channels only where given: its default (1 for idx files, else 3) depends on the source."""
    encoding = args.encoding or ("jpeg" if args.resize == "short" else "raw")
    options = {"resize": args.resize, "size": args.size, "max_size": args.max_size, "encoding": encoding,
               "jpeg_quality": (args.quality or 90) if encoding == "jpeg" else None}  # fmt: skip
    if args.channels is not None:
        options["channels"] = args.channels
    return options


def parse_prepare(words: list[str], *, what: str) -> argparse.Namespace:
    """`lsvr prepare`'s parse of words (SOURCE OUT then options); what the parser refuses is an
    InputError naming `what` (the config key, or a preset's header)."""
    from lsvr.cli import build_parser

    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
        try:
            return build_parser().parse_args(["prepare", *words])
        except SystemExit as exc:  # a usage error (2), or --help (0): neither names how a set was made
            helped = exc.code == 0
    if helped:
        raise InputError(f"{what}: --help names no option a set was made with")
    line = said.getvalue().strip().splitlines()[-1]  # "lsvr prepare: error: REASON (see `lsvr ... --help`)"
    reason = re.sub(r" \(see `[^`]*`\)$", "", line.split(": error: ", 1)[-1])
    raise InputError(f"{what}: {reason} (see `lsvr prepare --help`)")


def prepared_with(value: str) -> dict[str, Any] | None:
    """The recorded options data.prepared_with asks for; None where it is empty (no check). A
    value lsvr prepare would refuse is an InputError naming the key."""
    if not value.strip():
        return None
    what = f"config: {KEY}={value!r}"
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None
    args = parse_prepare(["SOURCE", "OUT", *words], what=what)
    options = recorded_options(args)
    resize, size, cap = options["resize"], options["size"], options["max_size"]
    from lsvr.data.prepare import check_short  # here: the config's checks import this module

    try:  # what lsvr prepare refuses before reading, in its own words
        check_short(resize, size=size, max_size=cap, encoding=options["encoding"])
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None
    if args.quality is not None and options["encoding"] == "raw":
        raise InputError(f"{what}: --quality is the JPEG quality of --encoding jpeg; these options store raw pixels")
    return options


def open_set(cfg: Config, folder: str) -> PreparedDataset:
    """The prepared set at folder; a missing one of a preset that names its preparation is an
    InputError giving the prepare command (a user who ran a preset before preparing its sets)."""
    from lsvr.data.dataset import PreparedDataset

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
    from lsvr.models.registry import model_spec
    from lsvr.train.setup import run_preprocess

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
