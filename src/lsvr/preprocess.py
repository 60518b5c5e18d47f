"""What a model needs of its input images: one versioned, typed record, saved in every
checkpoint and export, compared field by field where a dataset meets a model.

The pipeline it describes: prepare stores each image at `size` x `size` (`resize` policy,
`interpolation`, `channels`, `encoding`), or with resize "short" at shorter side `size`,
aspect kept (the longer side at most `max_size`); training takes random windows (`augment`:
the paper's `crop` square, or rrc: RandomResizedCrop resized to `crop`); evaluation brings an
image to `eval_size` (the prepare policy's size; "short": the shorter side, as torchvision's Resize) and takes the
centre `eval_crop` (and, with `eval_flip`, its mirror too; with `eval_shift`, crops shifted
that many pixels up-left and down-right as well, half the weight); both normalise (`normalize`: the
mean image, or per-channel mean/std, in 0..255 units). `classes` are the model's outputs.

Checkpoints written before the record had a version hold a plain dict of crop, size,
channels, resize, normalize and the statistics, with the classes beside it: `from_dict`
reads those too (the eval view is then the stored image and its centre crop, as it was).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

VERSION = 1  # 0: the unversioned dict of checkpoints written before this record


def _compared(label: str, fix: str = "") -> dict[str, Any]:
    """Metadata of a field `differences` compares: its name in messages, and how to fix it."""
    return {"compare": True, "label": label, "fix": fix}


@dataclass(frozen=True)
class Preprocess:
    classes: tuple[str, ...] = field(default=(), metadata=_compared("classes"))
    size: int | None = field(default=None, metadata=_compared("size", "--size {}"))  # stored side
    channels: int | None = field(default=None, metadata=_compared("channels", "--channels {}"))
    resize: str | None = field(default=None, metadata=_compared("resize", "--resize {}"))  # squash, center, pad, short
    max_size: int | None = None  # resize "short": the cap on the longer side (prepare --max-size); None: none
    # Not compared: it barely changes what a model sees (see lsvr.inference.check_dataset).
    encoding: str | None = None  # raw or jpeg; None: not recorded (older checkpoints)
    crop: int | None = field(default=None, metadata=_compared("data.crop"))  # the random training crop
    eval_size: int | None = None  # the side an image is brought to before the centre crop
    eval_crop: int | None = None
    eval_flip: bool = False  # evaluation averages each view with its mirror (data.val_flip; lsvr eval --flip)
    eval_shift: int = 0  # and views shifted this many px, half the weight (data.val_shift; lsvr eval --shift)
    interpolation: str = "bilinear"  # of the resize (prepare's, and inference's)
    # inference may decode a JPEG at a reduced DCT scale (1/2, 1/4, 1/8) that still covers the side
    # it is resized to, as prepare does; False: full decodes only (weights trained on those: torchvision's)
    reduced_decode: bool = True
    augment: str | None = None  # the training windows: crop (the paper) or rrc; None: not recorded
    normalize: str | None = field(default=None, metadata=_compared("data.normalize"))  # mean_image or channel
    mean_image: torch.Tensor | None = field(default=None, compare=False, repr=False)  # (size, size, C) float
    channel_mean: tuple[float, ...] | None = None
    channel_std: tuple[float, ...] | None = None
    version: int = VERSION

    @classmethod
    def from_dataset(cls, ds: Any, *, crop: int | None = None, normalize: str | None = None) -> Preprocess:
        """What a PreparedDataset (lsvr.data.dataset) gives its model; crop and normalize are the
        run's (None where no run is meant: a set compared with a model or another set)."""
        meta = ds.meta
        stats = {k: tuple(float(v) for v in meta[k]) if meta.get(k) else None for k in ("channel_mean", "channel_std")}
        size = int(ds.shape[0]) or int(meta["size"])  # a set of varying shapes (0 x 0): its shorter side
        mean = torch.from_numpy(ds.mean_image) if ds.mean_image is not None else None  # none where shapes vary
        return cls(
            classes=tuple(ds.classes), size=size, channels=int(ds.shape[2]), resize=meta.get("resize"),
            max_size=meta.get("max_size"), encoding=meta.get("encoding"), crop=crop, eval_size=size, eval_crop=crop,
            normalize=normalize, mean_image=mean, **stats,
        )  # fmt: skip

    def to_dict(self, *, mean_image: bool = True) -> dict[str, Any]:
        """Plain data for torch.save (weights_only) or, without the mean image, for JSON."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["classes"] = list(self.classes)
        for key in ("channel_mean", "channel_std"):
            out[key] = list(out[key]) if out[key] is not None else None
        if not mean_image:
            del out["mean_image"]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, classes: list[str] | tuple[str, ...] = ()) -> Preprocess:
        """A saved record, or the unversioned dict of older checkpoints (their classes were kept
        beside it: pass them). A ValueError names what does not fit."""
        if not isinstance(d, dict):
            raise ValueError(f"preprocess is a {type(d).__name__}, not a record")
        version = d.get("version", 0)
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(f"preprocess record version {version!r}; this lsvr reads up to {VERSION}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values.setdefault("classes", classes)
        values.setdefault("eval_size", d.get("size"))  # version 0: the stored image, centre-cropped
        values.setdefault("eval_crop", d.get("crop"))
        values["version"] = VERSION
        record = cls(**values)
        return dataclasses.replace(
            record,
            classes=tuple(record.classes),
            channel_mean=tuple(record.channel_mean) if record.channel_mean is not None else None,
            channel_std=tuple(record.channel_std) if record.channel_std is not None else None,
        )._checked()

    def _checked(self) -> Preprocess:
        for name in ("size", "max_size", "channels", "crop", "eval_size", "eval_crop"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"preprocess {name} is {value!r}, not a positive whole number")
        if not isinstance(self.eval_shift, int) or isinstance(self.eval_shift, bool) or self.eval_shift < 0:
            raise ValueError(f"preprocess eval_shift is {self.eval_shift!r}, not a whole number >= 0")
        for name in ("eval_flip", "reduced_decode"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"preprocess {name} is {getattr(self, name)!r}, not true or false")
        if not all(isinstance(c, str) for c in self.classes):
            raise ValueError("preprocess classes are not all names")
        if self.mean_image is not None and not isinstance(self.mean_image, torch.Tensor):
            raise ValueError(f"preprocess mean_image is a {type(self.mean_image).__name__}, not a tensor")
        return self

    def differences(self, other: Preprocess, *, names: tuple[str, str] = ("checkpoint", "dataset"),
                    fields: tuple[str, ...] | None = None) -> list[str]:  # fmt: skip
        """One phrase per compared field that differs: `resize: checkpoint 'center', dataset 'squash'
        (prepare with --resize center)`. names: what self and other are. fields: those to compare
        (default: every compared field). A field one side does not record (None, or no classes)
        is not compared: an older checkpoint, or a dataset that has no crop of its own."""
        out = []
        for f in dataclasses.fields(self):
            if not f.metadata.get("compare") or (fields is not None and f.name not in fields):
                continue
            want, got = getattr(self, f.name), getattr(other, f.name)
            if want in (None, ()) or got in (None, ()) or want == got:
                continue
            if f.name == "classes":
                out.append(_classes(list(want), list(got), names))
                continue
            fix = f" (prepare with {f.metadata['fix'].format(want)})" if f.metadata["fix"] else ""
            out.append(f"{f.metadata['label']}: {names[0]} {want!r}, {names[1]} {got!r}{fix}")
        return out


def _classes(want: list[str], got: list[str], names: tuple[str, str]) -> str:
    if sorted(want) == sorted(got):
        i = next(i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b)
        return (f"classes: the same {len(want)} names in another order (at index {i}: {names[0]} {want[i]!r},"
                f" {names[1]} {got[i]!r}; prepare with --classes-from)")  # fmt: skip
    only_a = [c for c in want if c not in set(got)][:3]
    only_b = [c for c in got if c not in set(want)][:3]
    parts = [f"{len(want)} in the {names[0]}, {len(got)} in the {names[1]}"]
    if only_a:
        parts.append(f"only in the {names[0]}: {', '.join(map(repr, only_a))}")
    if only_b:
        parts.append(f"only in the {names[1]}: {', '.join(map(repr, only_b))}")
    return "classes: " + "; ".join(parts)
