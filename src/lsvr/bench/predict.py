"""`lsvr bench predict`: `lsvr predict`'s path against a torchvision-style predict, on equal output.

    lsvr bench predict --images 1000 --model resnet18

Both score the same generated photos (500x375 JPEGs and the like, bench/photos.py) with the same
model (random weights of a seed, 1,000 classes) at the same view: the shorter side resized to
256, the centre 224, ImageNet's channel statistics. lsvr_predict is lsvr.predict_batches as
`lsvr predict FOLDER --json` runs it (a pool of decoding threads and torch's threads sized from
the free CPUs, the next batch decoding while the model runs, a JPEG decoded at the reduced DCT
scale that still covers 256 px, the activations kept in the heap: lsvr.memory.keep_activations);
baseline is what a torchvision user writes: each file opened with
PIL, Resize(256) + CenterCrop(224) + ToTensor + Normalize, batches of --batch through the model on
one thread of Python, torch's threads left as they are. torchvision's transforms run where
torchvision imports, else Pillow + numpy doing its arithmetic (`baseline_transforms` says which).
Measured as images per CPU-second of this process (every thread counted), interleaved rounds,
the median; the two sides' top-1 classes are compared image by image. lsvr_views and
baseline_views are the same two without the model (files to the float batch it would receive):
the part of the work the reading owns, and, from the baseline's two, the model's share.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from lsvr.bench.loader import photo_set
from lsvr.bench.timing import environment, measure, median, report, workdir
from lsvr.data.readers import Batch
from lsvr.evaluate import eval_views
from lsvr.inference import augment_for, predict
from lsvr.models.registry import IMAGENET_MEAN, IMAGENET_STD, build_model
from lsvr.predict_batches import scored_batches, take_free_cpus
from lsvr.preprocess import Preprocess

SIZE, CROP, CLASSES = 256, 224, 1000
GOAL, FLOOR = 3.0, 1.5  # issue 30: images per CPU-second against the baseline's


def record() -> Preprocess:
    """The view both sides score: torchvision's Resize(256) + CenterCrop(224) on channel statistics."""
    return Preprocess(classes=tuple(f"c{i}" for i in range(CLASSES)), size=SIZE, channels=3, resize="short",
                      eval_size=SIZE, eval_crop=CROP, normalize="channel",
                      channel_mean=tuple(255 * m for m in IMAGENET_MEAN),
                      channel_std=tuple(255 * s for s in IMAGENET_STD))  # fmt: skip


def baseline_transform() -> tuple[Callable[[Image.Image], torch.Tensor], str]:
    """torchvision's eval transform (imported lazily: not an lsvr dependency), else the same
    arithmetic in Pillow + numpy; and which of them it is."""
    try:
        from torchvision import transforms
    except ImportError:
        return pil_transform, "pillow+numpy (torchvision's arithmetic)"
    steps = [transforms.Resize(SIZE), transforms.CenterCrop(CROP), transforms.ToTensor(),
             transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]  # fmt: skip
    return transforms.Compose(steps), "torchvision"


MEAN, STD = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]


def pil_transform(image: Image.Image) -> torch.Tensor:
    """Resize(256) + CenterCrop(224) + ToTensor + Normalize as torchvision computes them on a PIL
    image: the longer side int(256 * long / short), Pillow's bilinear resize, the crop at
    int(round((side - 224) / 2)), bytes / 255 as float32, then (x - mean) / std."""
    width, height = image.size
    if width <= height:
        width, height = SIZE, int(SIZE * height / width)
    else:
        width, height = int(SIZE * width / height), SIZE
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    top, left = round((height - CROP) / 2.0), round((width - CROP) / 2.0)  # Python's round: half to even, as there
    image = image.crop((left, top, left + CROP, top + CROP))
    pixels = torch.from_numpy(np.array(image, np.uint8, copy=True)).view(CROP, CROP, 3).permute(2, 0, 1)
    return pixels.contiguous().to(torch.float32).div(255).sub_(MEAN).div_(STD)  # (3, 224, 224)


def bench_predict(*, images: int, batch: int, model_name: str, rounds: int, folder: str | None,
                  workers: int | None, as_json: bool) -> dict:  # fmt: skip
    root = workdir(folder)
    source = photo_set(root, images, workers or os.cpu_count() or 1)
    paths = [source.root / name for name in source.names]
    for path in paths:  # the page cache holds the files for both sides
        path.read_bytes()
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=CLASSES, in_channels=3, crop=CROP, dropout=0.0).eval()
    pre, device = record(), torch.device("cpu")
    augment = augment_for(pre, device)
    transform, transforms_name = baseline_transform()
    torch_threads = torch.get_num_threads()  # what a script that sets none runs with
    out: dict[str, list[torch.Tensor]] = {}

    def score(b: Batch) -> torch.Tensor:
        return predict(model, augment, b, device)

    def lsvr_predict() -> int:
        threads = take_free_cpus()  # as `lsvr predict` does at its start (0.2 s of measuring)
        out["threads"] = [threads]
        probs = []
        for scored in scored_batches(paths, pre, score, batch=batch, threads=threads):
            probs.append(scored.probs)
            scored.probs.topk(5, dim=1)  # the classes predict prints
        out["lsvr_predict"] = probs
        return len(paths)

    def baseline(scored: bool = True) -> int:
        torch.set_num_threads(torch_threads)
        probs = []
        with torch.inference_mode():
            for start in range(0, len(paths), batch):
                views = []
                for path in paths[start : start + batch]:
                    with Image.open(path) as image:
                        views.append(transform(image.convert("RGB")))
                if scored:
                    probs.append(torch.softmax(model(torch.stack(views)), dim=1))  # (B, classes)
                    probs[-1].topk(5, dim=1)  # the classes it prints
                else:
                    torch.stack(views)  # (B, 3, 224, 224): what the model would receive
        out["baseline" if scored else "baseline_views"] = probs
        return len(paths)

    def lsvr_views() -> int:  # lsvr_predict up to the float batch the model receives
        threads = take_free_cpus()
        for _ in scored_batches(paths, pre, lambda b: eval_views(augment, b)[0][0], batch=batch, threads=threads):
            pass
        return len(paths)

    runs = {"lsvr_predict": lsvr_predict, "baseline": baseline, "lsvr_views": lsvr_views,
            "baseline_views": lambda: baseline(scored=False)}  # fmt: skip
    rounds_of = {name: [] for name in runs}
    for _ in range(rounds):  # interleaved, so a noisy minute on a shared machine hits both
        for name, run in runs.items():
            rounds_of[name].append(measure(run))
    agreement = _agreement(torch.cat(out["lsvr_predict"]), torch.cat(out["baseline"]))
    settings = {"rounds": rounds, "images": images, "batch": batch, "model": model_name, "size": SIZE, "crop": CROP,
                "photo_sizes": "500x375 and the like", "jpeg_quality": 90, "baseline_transforms": transforms_name,
                "baseline_torch_threads": torch_threads, "lsvr_threads": out["threads"][0]}  # fmt: skip
    result, lines = _summary(rounds_of, agreement, settings, environment(workers or 0))
    report(result, as_json, [(name, median(ms)) for name, ms in rounds_of.items()], lines)
    return result


def _summary(rounds_of: dict[str, list], agreement: dict, settings: dict, env: dict) -> tuple[dict, list[str]]:
    """The bench's record and its lines: the ratios, the model's share, the agreement."""
    images, transforms_name = settings["images"], settings["baseline_transforms"]
    rows = {name: median(ms) for name, ms in rounds_of.items()}
    ratio = rows["lsvr_predict"].per_core / rows["baseline"].per_core
    views_ratio = rows["lsvr_views"].per_core / rows["baseline_views"].per_core
    # the model's CPU-seconds an image, as the baseline's whole less its views: what no reading can save
    model_s = rows["baseline"].cpu_s / rows["baseline"].images - rows["baseline_views"].cpu_s / images
    result = {
        "benchmark": "predict",
        "settings": settings,
        "environment": env,
        "images_per_sec_per_core": {name: round(m.per_core, 2) for name, m in rows.items()},
        "pipelines": {name: m.as_dict() for name, m in rows.items()},
        "rounds": {name: [round(m.per_core, 2) for m in ms] for name, ms in rounds_of.items()},
        "ratio_vs_baseline": round(ratio, 3),
        "views_ratio_vs_baseline": round(views_ratio, 3),
        "model_cpu_s_per_image": round(model_s, 5),
        "model_share_of_baseline": round(model_s * rows["baseline"].per_core, 3),
        "equal_output": agreement,
        "goals": {
            "ratio_vs_baseline": {"goal": GOAL, "floor": FLOOR, "met": ratio >= GOAL, "floor_met": ratio >= FLOOR}
        },
    }
    met = "met" if ratio >= GOAL else ("floor met" if ratio >= FLOOR else "MISSED")
    lines = [f"ratio_vs_baseline: {ratio:.3f} (goal >= {GOAL}, floor >= {FLOOR}: {met}); baseline: {transforms_name}",
             f"equal output: top-1 the same for {agreement['top1_agreement']:.2%} of {images} images, top-5 sets"
             f" {agreement['top5_agreement']:.2%}; max |probability difference|"
             f" {agreement['max_probability_diff']:.2e}",
             f"views_ratio_vs_baseline: {views_ratio:.3f} (files to the float batch the model receives, no model);"
             f" the model is {model_s * rows['baseline'].per_core:.0%} of the baseline's CPU time"]  # fmt: skip
    return result, lines


def _agreement(ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    """How closely two (N, classes) probability tables agree: top-1 equal, top-5 the same set."""
    mine, other = ours.topk(5, dim=1).indices.tolist(), theirs.topk(5, dim=1).indices.tolist()
    top5 = [set(a) == set(b) for a, b in zip(mine, other, strict=True)]
    return {
        "top1_agreement": round(float((ours.argmax(1) == theirs.argmax(1)).float().mean()), 4),
        "top5_agreement": round(float(np.mean(top5)), 4),
        "max_probability_diff": float((ours - theirs).abs().max()),
    }
