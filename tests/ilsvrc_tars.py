"""ILSVRC2012's files as users download them, generated small: ILSVRC2012_img_train.tar (an
outer tar of inner wnid tars, n01440764.tar and on), ILSVRC2012_img_val.tar (flat) and
ILSVRC2012_devkit_t12.tar.gz (data/meta.mat and the validation ground truth), beside the same
images unpacked into folders. The real set's oddities are among the images: a CMYK JPEG, a
PNG named .JPEG and a grey JPEG."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

WNIDS = ["n01440764", "n01443537", "n01484850"]  # sorted: the train class order
DEVKIT_ORDER = ["n01484850", "n01440764", "n01443537"]  # ILSVRC2012_ID 1, 2, 3: not sorted
PER_CLASS = 5
VAL = 7


def image_bytes(rng: np.random.Generator, k: int) -> bytes:
    """A small photo-like image; k picks the oddity: 1 CMYK JPEG, 2 PNG (named .JPEG), 3 grey JPEG."""
    h, w = int(rng.integers(40, 70)), int(rng.integers(40, 70))
    pixels = np.clip(rng.normal(120, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    image, fmt = Image.fromarray(pixels), "JPEG"
    if k == 1:
        image = image.convert("CMYK")
    elif k == 2:
        fmt = "PNG"
    elif k == 3:
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, fmt, quality=90)
    return out.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(files: dict[str, bytes], order: list[str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in order or list(files):
            add(tar, name, files[name])
    return buffer.getvalue()


def write_ilsvrc(root: Path, seed: int = 0) -> dict[str, Path]:
    """The three downloads in root, and root/unpacked/{train,val} holding the same images."""
    rng = np.random.default_rng(seed)
    paths = {"train": root / "ILSVRC2012_img_train.tar", "val": root / "ILSVRC2012_img_val.tar",
             "devkit": root / "ILSVRC2012_devkit_t12.tar.gz", "train_dir": root / "unpacked" / "train",
             "val_dir": root / "unpacked" / "val"}  # fmt: skip
    classes = {}
    for c, wnid in enumerate(WNIDS):
        classes[wnid] = {f"{wnid}_{k + 1}.JPEG": image_bytes(rng, (c + k) % 4) for k in range(PER_CLASS)}
        for name, data in classes[wnid].items():
            (paths["train_dir"] / wnid).mkdir(parents=True, exist_ok=True)
            (paths["train_dir"] / wnid / name).write_bytes(data)
    with tarfile.open(paths["train"], "w") as outer:  # inner tars, and their members, not in sorted order
        for wnid in reversed(WNIDS):
            add(outer, f"{wnid}.tar", tar_bytes(classes[wnid], sorted(classes[wnid], reverse=True)))
    truth = [WNIDS[int(rng.integers(len(WNIDS)))] for _ in range(VAL)]
    val = {f"ILSVRC2012_val_{k:08d}.JPEG": image_bytes(rng, k % 4) for k in range(1, VAL + 1)}
    paths["val_dir"].mkdir(parents=True)
    for name, data in val.items():
        (paths["val_dir"] / name).write_bytes(data)
    paths["val"].write_bytes(tar_bytes(val))
    devkit = root / "devkit" / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    synsets = np.array([(i + 1, wnid, f"words {i}") for i, wnid in enumerate(DEVKIT_ORDER)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])  # fmt: skip
    savemat(devkit / "meta.mat", {"synsets": synsets})
    ids = "".join(f"{DEVKIT_ORDER.index(w) + 1}\n" for w in truth)
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text(ids)
    with tarfile.open(paths["devkit"], "w:gz") as tar:
        tar.add(devkit.parent, arcname="ILSVRC2012_devkit_t12")
    paths["truth"] = devkit / "ILSVRC2012_validation_ground_truth.txt"
    paths["expected_val"] = np.array([WNIDS.index(w) for w in truth])
    return paths
