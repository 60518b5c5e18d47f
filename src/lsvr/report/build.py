"""A report's three files from an eval pass's predictions: report.json (every number), per_class.csv
and index.html (the page, its pictures inline).

    lsvr eval CHECKPOINT SET --report DIR
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lsvr import __version__
from lsvr.preprocess import Preprocess
from lsvr.report import page, pictures
from lsvr.report.folder import CSV_HEADER, NUMBERS, PAGE, TABLE, write_report_files
from lsvr.report.numbers import Predictions, confusion, summarize

# (row) -> the stored (H, W, C) uint8 image of that row of the scored set, for a thumbnail
ImageOf = Callable[[int], np.ndarray]


def report_numbers(pred: Predictions, classes: list[str], *, about: dict) -> dict:
    """report.json's dict: its mark first (what a later --report into the folder looks for), the
    run's description (`about`: checkpoint, dataset, view), the classes, then summarize()'s numbers."""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"generator": page.GENERATOR, "version": 1, "about": {**about, "lsvr": __version__, "made": made},
            "classes": list(classes), **summarize(pred, list(classes))}  # fmt: skip


def per_class_csv(report: dict) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    out.write(CSV_HEADER + "\n")
    for r in report["per_class"]:
        writer.writerow([r[k] if r[k] is not None else "" for k in CSV_HEADER.split(",")])
    return out.getvalue().encode()


def report_files(pred: Predictions, classes: list[str], *, about: dict, image: ImageOf | None = None) -> dict:
    """{file name: bytes} of a report; image: each top loss's stored picture (None: captions only)."""
    report = report_numbers(pred, classes, about=about)
    thumbnails = {}
    if image is not None:
        thumbnails = {item["row"]: pictures.thumbnail_jpeg(image(item["row"])) for item in report["top_losses"]}
    index = page.render(report, confusion_png=pictures.confusion_png(confusion(pred, len(classes)), list(classes)),
                        reliability_png=pictures.reliability_png(report["reliability"], report["ece"]),
                        thumbnails=thumbnails)  # fmt: skip
    return {NUMBERS: json.dumps(report).encode(), TABLE: per_class_csv(report), PAGE: index.encode()}


def stored_image(dataset, row: int, side: int = pictures.THUMBNAIL) -> np.ndarray:
    """A prepared set's (lsvr.data.dataset.PreparedDataset) image at `row`, as stored; a large JPEG
    decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the thumbnail."""
    height, width = (int(v) for v in dataset.sizes(np.array([row]))[0])
    scale = 1
    while scale < 8 and -(-max(height, width) // (scale * 2)) >= side:
        scale *= 2
    return dataset.image(row, scale=scale if dataset.encoding != "raw" else 1)


def write_eval_report(folder: Path, pred: Predictions, *, dataset, pre: Preprocess, record: Preprocess, crops: int,
                      checkpoint: str, description: str) -> Path:  # fmt: skip
    """`lsvr eval --report DIR`: the report of one eval pass over `dataset` (a PreparedDataset, its rows
    in order) as `pre` viewed it (record: the checkpoint's own view, shown where a flag changed it);
    returns the page's path."""
    if len(pred) != len(dataset):  # evaluation reads every row once, in order: the thumbnails rely on it
        raise RuntimeError(f"the eval pass kept {len(pred)} images of {len(dataset)}")
    view = {"resize": pre.eval_size, "crop": pre.eval_crop, "crops": crops, "flip": pre.eval_flip,
            "shift": pre.eval_shift, "interpolation": pre.interpolation, "normalize": pre.normalize,
            "description": description,
            "record": {"resize": record.eval_size, "crop": record.eval_crop, "flip": record.eval_flip,
                       "shift": record.eval_shift}}  # fmt: skip
    about = {"checkpoint": checkpoint, "dataset": str(dataset.path), "view": view}
    files = report_files(pred, list(pre.classes or dataset.classes), about=about,
                         image=lambda row: stored_image(dataset, row))  # fmt: skip
    return write_report_files(folder, files)
