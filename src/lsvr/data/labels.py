"""Label files for a flat folder (or tar) of images: the ILSVRC val/ layouts.

Three forms, told apart by their content:
- Caffe's `val.txt`: `FILENAME INDEX` per line; INDEX counts in the class order of the
  training set (sorted wnids), so the classes must be given (--classes-from).
- `LOC_val_solution.csv`: a header `ImageId,PredictionString`, then `ID,WNID x y x y ...`.
- The devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID per line, line k
  for `ILSVRC2012_val_<k, 8 digits>`. The ids follow the devkit's own synset order, NOT the
  sorted wnids: they are mapped to wnids through the devkit's `meta.mat` (beside the file,
  or given with --devkit-meta), else every label would be silently wrong. The devkit's
  `ILSVRC2012_devkit_t12.tar.gz` itself gives both, read in memory from the tar.
Images are matched to labels by file stem, so `ID` and `ID.JPEG` name the same image.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from lsvr.data.sources import ListSource, list_folder
from lsvr.data.tar_index import is_tar_name, open_tar
from lsvr.errors import InputError


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"  # inside ILSVRC2012_devkit_t12.tar.gz
META = "data/meta.mat"


def devkit_member(devkit: Path, name: str) -> bytes:
    """A file of the devkit's .tar.gz (GROUND_TRUTH or META, under any top folder), read in memory."""
    with open_tar(devkit) as tar:
        for info in tar:
            if info.isreg() and (info.name == name or info.name.endswith("/" + name)):
                return tar.extractfile(info).read()
            tar.members.clear()
    raise InputError(f"{devkit}: no {name} in the tar (expected ILSVRC2012_devkit_t12.tar.gz)")


def devkit_synsets(meta_path: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid, read from the devkit's meta.mat (or the devkit's .tar.gz)."""
    if not meta_path.is_file():
        raise InputError(f"{meta_path}: no devkit meta.mat (needed to map ILSVRC2012_IDs to wnids; see --devkit-meta)")
    from scipy.io import loadmat  # only the devkit form needs scipy

    meta = io.BytesIO(devkit_member(meta_path, META)) if is_tar_name(meta_path.name) else meta_path
    try:
        synsets = loadmat(meta, squeeze_me=True)["synsets"]
        return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in np.atleast_1d(synsets)}
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise InputError(f"{meta_path}: not a devkit meta.mat with synsets ({exc})") from None


def read_label_file(path: Path, classes: list[str] | None, devkit_meta: Path | None = None) -> dict[str, str]:
    """Image stem -> class name (wnid), from any of the three forms, or from the devkit's
    .tar.gz (its ground truth, mapped through its own meta.mat unless devkit_meta is given)."""
    if not path.is_file():
        raise InputError(f"{path}: no such label file")
    devkit = is_tar_name(path.name)
    try:
        text = devkit_member(path, GROUND_TRUTH).decode() if devkit else path.read_text()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text label file") from None
    if not lines:
        raise InputError(f"{path}: empty label file")
    if lines[0].lower().startswith("imageid"):  # LOC_val_solution.csv
        _no_devkit_meta(devkit_meta, path)
        labels = {}
        for row in csv.DictReader(lines):
            words = (row.get("PredictionString") or "").split()
            if not row.get("ImageId") or not words:
                raise InputError(f"{path}: a row without ImageId or PredictionString: {row}")
            labels[_stem(row["ImageId"])] = words[0]
        return labels
    fields = [line.split() for line in lines]
    if all(len(f) == 1 and f[0].isdigit() for f in fields):  # devkit ground truth
        synsets = devkit_synsets(devkit_meta or (path if devkit else path.with_name("meta.mat")))
        labels = {}
        for k, (ident,) in enumerate(fields, start=1):
            if int(ident) not in synsets:
                raise InputError(f"{path}:{k}: ILSVRC2012_ID {ident} is not in the devkit's meta.mat")
            labels[f"ILSVRC2012_val_{k:08d}"] = synsets[int(ident)]
        return labels
    if all(len(f) == 2 for f in fields):  # val.txt: FILENAME INDEX (or FILENAME WNID)
        _no_devkit_meta(devkit_meta, path)
        labels = {}
        for k, (name, label) in enumerate(fields, start=1):
            if label.isdigit():
                if classes is None:
                    raise InputError(f"{path}: class indices need the class order: pass --classes-from PREPARED_TRAIN")
                if int(label) >= len(classes):
                    raise InputError(f"{path}:{k}: class index {label} but only {len(classes)} classes")
                label = classes[int(label)]
            labels[_stem(name)] = label
        return labels
    raise InputError(f"{path}: not a known label file (val.txt, LOC_val_solution.csv or the devkit ground truth)")


def _no_devkit_meta(devkit_meta: Path | None, label_file: Path) -> None:
    """--devkit-meta with a label file that names its classes: it would be ignored without a word."""
    if devkit_meta is not None:
        raise InputError(f"--devkit-meta {devkit_meta}: maps the ILSVRC2012_IDs of the devkit's ground truth;"
                         f" {label_file} names its classes itself")  # fmt: skip


def labelled_folder(
    root: Path, label_file: Path, classes: list[str] | None, devkit_meta: Path | None = None
) -> ListSource:
    """A flat folder of images labelled by a label file."""
    by_stem = read_label_file(label_file, classes, devkit_meta)
    names = list_folder(root)
    labels, classes = label_items(names, by_stem, classes, root=root, label_file=label_file)
    return ListSource(root=root, names=names, labels=labels, classes=classes)


def label_items(names: list[str], by_stem: dict[str, str], classes: list[str] | None, *, root: Path,
                label_file: Path) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """Each image's class index, and the classes (given, else the labels' sorted names). Every
    image needs a label, every label an image, and every class must be known: each is checked
    here, not at the loss."""
    if classes is None:
        classes = sorted(set(by_stem.values()))  # the ImageFolder order, as train's
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({c for c in by_stem.values() if c not in index})
    if unknown:
        shown = ", ".join(unknown[:5])
        raise InputError(f"{label_file}: {len(unknown)} labels name classes not in the class list: {shown}")
    unlabelled = [n for n in names if _stem(n) not in by_stem]
    if unlabelled:
        shown = ", ".join(os.fsencode(n).decode("utf-8", "replace") for n in unlabelled[:5])
        raise InputError(f"{root}: {len(unlabelled)} images have no label in {label_file}: {shown}")
    present = {_stem(n) for n in names}
    missing = sorted(s for s in by_stem if s not in present)
    if missing:
        raise InputError(f"{label_file}: {len(missing)} labelled images are not in {root}: {', '.join(missing[:5])}")
    return np.array([index[by_stem[_stem(n)]] for n in names], dtype=np.int64), classes
