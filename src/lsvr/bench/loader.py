"""`lsvr bench loader`: lsvr's loader against a torchvision-style pipeline and the bare limits.

Seven pipelines over the same generated photos, with the same crop (224) and flip work:
lsvr_jpeg and lsvr_raw (lsvr's Loader on the two encodings), baseline_pil (a per-sample
Dataset that opens the original JPEGs with PIL, does RandomResizedCrop + flip and ends in
uint8 tensors, through torch's DataLoader with as many worker processes as lsvr has
threads), decode_limit (bare libjpeg-turbo decode of the same 256 px JPEGs, one core) and
gather_limit (bare copy of the same batches' rows out of the raw memory map, one core).
The rrc pair ends where the model starts, in normalised float batches: lsvr_rrc (the
Loader's RandomResizedCrop windows on a `--resize short` set of shorter side 256, then
Augment's mirror and per-channel normalisation) and baseline_rrc (baseline_pil ending in
ToTensor + Normalize); lsvr's side is also reported with its prepare cost spread over 1 and 10 epochs.
lsvr_rrc_ra is lsvr_rrc with the ViT recipe's RandAugment (2 ops at magnitude 9) in the reading threads.
On equal output, float batches: lsvr_jpeg_float (lsvr_jpeg, then Augment's per-channel
normalisation) against baseline_rrc and, where torchvision is installed, baseline_torchvision
(its decode_jpeg + transforms.v2 recipe, normalised).
"""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image

from lsvr.bench.photos import write_photos
from lsvr.bench.timing import Measure, environment, measure, median, report, workdir
from lsvr.data.augment import Augment, mirror_images
from lsvr.data.dataset import PreparedDataset
from lsvr.data.loader import Loader
from lsvr.data.prepare import prepare
from lsvr.data.randaugment import RandAugment
from lsvr.data.sources import FolderSource
from lsvr.models.registry import IMAGENET_MEAN, IMAGENET_STD

CROP = 224
MEAN, STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)  # 0..1 units


def photo_set(root: Path, count: int, workers: int) -> FolderSource:
    """The generated photos (made once, kept in the bench folder) as a prepare source."""
    folder = root / f"photos-{count}"
    done = folder / ".complete"
    if not done.is_file():
        write_photos(folder, count, workers=workers)
        done.touch()
    return FolderSource(folder, None)


def prepared(
    source: FolderSource, out: Path, encoding: str, workers: int, *, resize: str = "squash"
) -> PreparedDataset:
    """source prepared at 256 (squash: 256 x 256; short: the shorter side 256, the aspect kept,
    as RandomResizedCrop wants it); an earlier identical preparation is reused."""
    prepare(source, out, size=256, resize_policy=resize, encoding=encoding, workers=workers, progress=False)
    return PreparedDataset(out)


class PilCrops(torch.utils.data.Dataset):
    """torchvision's reference recipe without torchvision: PIL decode of the original file,
    RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3)), horizontal flip (p=0.5), and
    PILToTensor (uint8, C x H x W) or, with normalize, ToTensor + Normalize (float32, the
    ImageNet statistics: what the model receives)."""

    def __init__(self, paths: list[Path], labels: np.ndarray, crop: int = CROP, normalize: bool = False) -> None:
        self.paths, self.labels, self.crop, self.normalize = paths, labels, crop, normalize

    def __len__(self) -> int:
        return len(self.paths)

    @staticmethod
    def crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                left, top = rng.randint(0, width - w), rng.randint(0, height - h)
                return left, top, left + w, top + h
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = random.Random()
        with Image.open(self.paths[i]) as image:
            image = image.convert("RGB")
            image = image.resize((self.crop, self.crop), Image.Resampling.BILINEAR, box=self.crop_box(*image.size, rng))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # (C, H, W) uint8
        if self.normalize:  # ToTensor, then Normalize (its sub_ and div_)
            pixels = (pixels.float() / 255).sub_(MEAN[:, None, None]).div_(STD[:, None, None])
        return pixels, int(self.labels[i])


def _lsvr(ds: PreparedDataset, batch: int, workers: int, epochs: int, *, rrc: bool = False,
          randaugment: RandAugment | None = None, normalize: bool = False) -> Measure:  # fmt: skip
    """The loader cuts the crops in its threads; the mirror follows on the consuming thread,
    as Augment.train does it. rrc: RandomResizedCrop windows (decoded at reduced scale where
    they allow, resized in the threads), then Augment's mirror and per-channel normalisation
    to the float batches the model receives. randaugment: its ops in the reading threads too."""
    loader = Loader(ds, batch_size=batch, shuffle=True, seed=0, workers=workers, prefetch=2 * workers, crop=CROP,
                    window="rrc" if rrc else "crop", randaugment=randaugment, epochs=epochs)  # fmt: skip
    augment = Augment(mean_image=None, channel_mean=(MEAN * 255).tolist(), channel_std=(STD * 255).tolist(),
                      crop=CROP, normalize="channel")  # fmt: skip
    for i, b in enumerate(loader.batches(99)):  # steady state: the buffers exist, as in any long run
        b.release()
        if i > loader.prefetch + 2:
            break
    loader.close()  # the warm-up's read-ahead done with before the clock starts

    def run() -> int:
        count = 0
        for epoch in range(epochs):
            for b in loader.batches(epoch):
                if rrc or normalize:
                    augment.train(b)  # (B, 3, 224, 224) float32
                else:
                    mirror_images(b.images, b.draws.mirror)
                count += len(b.labels)
                b.release()
        return count

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the consumer's flips: one thread, no idle OpenMP helpers spinning
    try:
        return measure(run)
    finally:
        torch.set_num_threads(threads)


def _baseline(source: FolderSource, batch: int, workers: int, *, normalize: bool = False) -> Measure:
    dataset = PilCrops([source.root / n for n in source.names], source.labels, normalize=normalize)

    def run() -> int:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                             drop_last=True)  # fmt: skip
        return sum(len(labels) for _, labels in loader)  # the workers are joined when it ends

    return measure(run, children=True)


class TorchvisionCrops(torch.utils.data.Dataset):
    """torchvision's tensor recipe: `decode_jpeg` of the original file's bytes, then
    transforms.v2 RandomResizedCrop(224, antialias) + RandomHorizontalFlip + ToDtype(float32,
    scale) + Normalize (the ImageNet statistics): the float batch the model receives."""

    def __init__(self, paths: list[Path], labels: np.ndarray, crop: int = CROP) -> None:
        from torchvision.io import decode_jpeg
        from torchvision.transforms import v2

        self.paths, self.labels, self.decode = paths, labels, decode_jpeg
        steps = [v2.RandomResizedCrop(crop, antialias=True), v2.RandomHorizontalFlip(),
                 v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]  # fmt: skip
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        data = torch.frombuffer(bytearray(self.paths[i].read_bytes()), dtype=torch.uint8)
        return self.transform(self.decode(data)), int(self.labels[i])


def _torchvision(source: FolderSource, batch: int, workers: int) -> Measure | None:
    """torchvision's decode_jpeg + transforms.v2 pipeline through DataLoader; None without torchvision."""
    try:
        dataset = TorchvisionCrops([source.root / n for n in source.names], source.labels)
    except ImportError:
        return None

    def run() -> int:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                             drop_last=True)  # fmt: skip
        return sum(len(labels) for _, labels in loader)

    return measure(run, children=True)


def _decode_limit(ds: PreparedDataset, rows: np.ndarray, passes: int) -> Measure:
    out = np.empty(ds.shape, np.uint8)

    def run() -> int:
        for _ in range(passes):
            for i in rows:
                simplejpeg.decode_jpeg(ds.blob[ds.offsets[i] : ds.offsets[i + 1]], colorspace="RGB", buffer=out)
        return passes * len(rows)

    return measure(run, thread_only=True)


def _gather_limit(ds: PreparedDataset, batches: list[np.ndarray], passes: int) -> Measure:
    out = np.empty((len(batches[0]), *ds.shape), np.uint8)

    def run() -> int:
        for _ in range(passes):
            for rows in batches:
                np.take(ds.images, rows, axis=0, out=out)
        return passes * sum(len(r) for r in batches)

    return measure(run, thread_only=True)


def _prepare_cost(source: FolderSource, out: Path, workers: int) -> float:
    """CPU-seconds (this process and its workers) of preparing the rrc pipeline's set (shorter
    side 256, JPEG) afresh: what lsvr pays once, before any epoch, and the baseline never does."""
    shutil.rmtree(out, ignore_errors=True)
    try:
        return measure(lambda: prepared(source, out, "jpeg", workers, resize="short") and len(source),
                       children=True).cpu_s  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _ratios(per_core: dict[str, float], prepare_s: float) -> dict[str, float]:
    """The bench's figures from each pipeline's images per CPU-second (prepare_s: CPU-seconds
    an image of preparing the rrc set, spread over 1 and 10 epochs)."""
    ratios = {
        "ratio_vs_baseline": per_core["lsvr_jpeg"] / per_core["baseline_pil"],
        **{
            f"rrc_ratio_vs_baseline_{e}_epochs": per_core["lsvr_rrc"]
            / (1 + prepare_s * per_core["lsvr_rrc"] / e)
            / per_core["baseline_rrc"]
            for e in (1, 10)
        },
        "rrc_ratio_vs_baseline": per_core["lsvr_rrc"] / per_core["baseline_rrc"],
        "fraction_of_decode_limit": per_core["lsvr_jpeg"] / per_core["decode_limit"],
        "fraction_of_gather_limit": per_core["lsvr_raw"] / per_core["gather_limit"],
        "float_ratio_vs_pil": per_core["lsvr_jpeg_float"] / per_core["baseline_rrc"],
    }
    if "baseline_torchvision" in per_core:
        ratios["float_ratio_vs_torchvision"] = per_core["lsvr_jpeg_float"] / per_core["baseline_torchvision"]
    return ratios


def bench_loader(*, images: int, batch: int, workers: int | None, epochs: int, rounds: int, folder: str | None,
                 as_json: bool) -> dict:  # fmt: skip
    workers = workers or os.cpu_count() or 1
    root = workdir(folder)
    source = photo_set(root, images, workers)
    jpeg = prepared(source, root / f"prepared-{images}-jpeg", "jpeg", workers)
    raw = prepared(source, root / f"prepared-{images}-raw", "raw", workers)
    short = prepared(source, root / f"prepared-{images}-short", "jpeg", workers, resize="short")
    for ds in (jpeg, raw, short):  # the page cache holds both, as it would after the first epoch
        np.asarray(ds.blob if ds.encoding == "jpeg" else ds.images).max()
    order = Loader(raw, batch_size=batch, shuffle=True, seed=0).epoch_order(0)
    batches = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)]
    runs = {
        "decode_limit": lambda: _decode_limit(jpeg, np.concatenate(batches), epochs),
        "gather_limit": lambda: _gather_limit(raw, batches, 4 * epochs),
        "lsvr_jpeg": lambda: _lsvr(jpeg, batch, workers, epochs),
        "lsvr_raw": lambda: _lsvr(raw, batch, workers, 4 * epochs),
        "baseline_pil": lambda: _baseline(source, batch, workers),
        "lsvr_rrc": lambda: _lsvr(short, batch, workers, epochs, rrc=True),
        "lsvr_rrc_ra": lambda: _lsvr(
            short, batch, workers, epochs, rrc=True, randaugment=RandAugment(num_ops=2, magnitude=9)
        ),
        "baseline_rrc": lambda: _baseline(source, batch, workers, normalize=True),
        # equal output, the float batches the model receives: the paper's crop path normalised
        "lsvr_jpeg_float": lambda: _lsvr(jpeg, batch, workers, epochs, normalize=True),
        "baseline_torchvision": lambda: _torchvision(source, batch, workers),
    }
    rounds_of = {name: [] for name in runs}
    for _ in range(rounds):  # interleaved, so a noisy minute on a shared machine hits every pipeline
        for name, run in runs.items():
            rounds_of[name].append(run())
    if None in rounds_of["baseline_torchvision"]:  # torchvision is not installed: not measured
        del rounds_of["baseline_torchvision"]
    rows = {name: median(ms) for name, ms in rounds_of.items()}
    per_core = {name: m.per_core for name, m in rows.items()}
    prepare_s = _prepare_cost(source, root / "prepare-timing", workers) / len(source)  # CPU-seconds an image
    ratios = _ratios(per_core, prepare_s)
    goals = {"ratio_vs_baseline": 6.0, "fraction_of_decode_limit": 0.85, "fraction_of_gather_limit": 0.8,
             "rrc_ratio_vs_baseline": 4.0, "float_ratio_vs_pil": 3.0, "float_ratio_vs_torchvision": 2.0}  # fmt: skip
    goals = {name: goal for name, goal in goals.items() if name in ratios}
    result = {
        "benchmark": "loader",
        "settings": {
            "rounds": rounds,
            "images": images,
            "batch": batch,
            "crop": CROP,
            "epochs": epochs,
            "stored_size": 256,  # rrc: the shorter side
            "jpeg_quality": 90,
            "photo_sizes": "500x375 and the like",
            "prepare_cpu_s_per_image": round(prepare_s, 5),
        },
        "environment": environment(workers),
        "images_per_sec_per_core": {name: round(v, 1) for name, v in per_core.items()},
        "pipelines": {name: m.as_dict() for name, m in rows.items()},
        "rounds": {name: [round(m.per_core, 1) for m in ms] for name, ms in rounds_of.items()},
        **{name: round(v, 3) for name, v in ratios.items()},
        "goals": {name: {"goal": goal, "met": ratios[name] >= goal} for name, goal in goals.items()},
    }
    lines = [f"{name}: {ratios[name]:.3f} (goal >= {goal}: {'met' if ratios[name] >= goal else 'MISSED'})"
             for name, goal in goals.items()]  # fmt: skip
    lines += [f"rrc_ratio_vs_baseline_{e}_epochs: {ratios[f'rrc_ratio_vs_baseline_{e}_epochs']:.3f} (prepare's"
              f" {prepare_s * 1000:.2f} ms of CPU an image spread over {e} epoch{'s' if e > 1 else ''})"
              for e in (1, 10)]  # fmt: skip
    report(result, as_json, list(rows.items()), lines)
    return result
