"""`lsvr bench prepare`: `lsvr prepare` against the bare work it does, per core.

prepare_limit is one thread doing nothing but read, decode at reduced scale where the size
allows, resize and encode each of the same photos, as prepare does for --encoding jpeg at 256.
lsvr_prepare is the whole command (thread pool, commits, sums, checksums) from the same files.
"""

from __future__ import annotations

import os
import shutil

import simplejpeg

from lsvr.bench.loader import photo_set
from lsvr.bench.timing import environment, measure, median, report, workdir
from lsvr.data.image import decode_file, resize
from lsvr.data.prepare import prepare

ILSVRC_TRAIN = 1_281_167
SIZE = 256


def settings(rounds: int, images: int) -> dict:
    """The settings both prepare benches share: 256 px squashed JPEG."""
    return {"rounds": rounds, "images": images, "size": SIZE, "resize": "squash", "encoding": "jpeg"}


def bench_prepare(*, images: int, workers: int | None, rounds: int, folder: str | None, as_json: bool) -> dict:
    workers = workers or os.cpu_count() or 1
    root = workdir(folder)
    source = photo_set(root, images, workers)
    paths = [source.root / name for name in source.names]
    for path in paths:  # the page cache holds the originals for both runs
        path.read_bytes()

    def limit() -> int:
        for path in paths:
            pixels = resize(decode_file(path, SIZE), SIZE, "squash")
            simplejpeg.encode_jpeg(pixels, quality=90, colorspace="RGB", colorsubsampling="420")
        return len(paths)

    out = root / "bench-prepare-out"

    def whole() -> int:
        return prepare(source, out, size=SIZE, encoding="jpeg", workers=workers, overwrite=True,
                       progress=False)["num_images"]  # fmt: skip

    rounds_of = {"prepare_limit": [], "lsvr_prepare": []}
    for _ in range(rounds):  # interleaved, so a noisy minute on a shared machine hits both
        rounds_of["prepare_limit"].append(measure(limit, thread_only=True))
        rounds_of["lsvr_prepare"].append(measure(whole))
    rows = {name: median(ms) for name, ms in rounds_of.items()}
    shutil.rmtree(out, ignore_errors=True)
    fraction = rows["lsvr_prepare"].per_core / rows["prepare_limit"].per_core
    per_core = rows["lsvr_prepare"].per_core
    hours_16 = ILSVRC_TRAIN / (16 * per_core) / 3600
    result = {
        "benchmark": "prepare",
        "settings": {**settings(rounds, images), "jpeg_quality": 90},
        "environment": environment(workers),
        "images_per_sec_per_core": {name: round(m.per_core, 1) for name, m in rows.items()},
        "pipelines": {name: m.as_dict() for name, m in rows.items()},
        "rounds": {name: [round(m.per_core, 1) for m in ms] for name, ms in rounds_of.items()},
        "fraction_of_prepare_limit": round(fraction, 3),
        "ilsvrc_train_hours_on_16_cores": round(hours_16, 2),
        "goals": {
            "fraction_of_prepare_limit": {"goal": 0.85, "met": fraction >= 0.85},
            "images_per_sec_per_core": {"goal": 250, "met": per_core >= 250},
        },
    }
    lines = [
        f"fraction_of_prepare_limit: {fraction:.3f} (goal >= 0.85: {'met' if fraction >= 0.85 else 'MISSED'})",
        f"per core: {per_core:.1f} images/s (goal >= 250: {'met' if per_core >= 250 else 'MISSED'});"
        f" ILSVRC2012 train on 16 such cores: {hours_16:.2f} h",
    ]
    report(result, as_json, list(rows.items()), lines)
    return result
