"""The size and build time of an `lsvr eval --report` for a generated set: random logits for CLASSES
classes and IMAGES images (the true class's logit raised, so the model is right about half the
time and the confusion matrix is full of single stray cells: a worst case for its PNG), through the
report's own code; each top loss's thumbnail from a random 160 x 120 RGB image (noise: the largest
JPEG of that size).

    python scripts/report_size.py 1000 50000 /tmp/report-1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lsvr.report.build import report_files
from lsvr.report.folder import write_report_files
from lsvr.report.numbers import Predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("classes", type=int)
    parser.add_argument("images", type=int)
    parser.add_argument("out", type=Path, help="the report folder (new, empty or an earlier report's)")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.classes, (args.images,), generator=generator)
    logits = torch.randn(args.images, args.classes, generator=generator) * 2  # (N, classes)
    logits[torch.arange(args.images), labels] += 4.0
    probs = torch.softmax(logits, dim=1).numpy()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    pred = Predictions.from_probs(probs, labels.numpy())  # what the eval pass keeps of each batch
    about = {"checkpoint": "generated", "dataset": "generated", "view": {"description": "generated logits"}}
    files = report_files(pred, [f"class {i:04d}" for i in range(args.classes)], about=about,
                         image=lambda row: rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))  # fmt: skip
    write_report_files(args.out, files)
    seconds = time.perf_counter() - start
    sizes = {name: len(data) for name, data in files.items()}
    print(json.dumps({"classes": args.classes, "images": args.images, "seconds": round(seconds, 2),
                      "bytes": sum(sizes.values()), **sizes}))  # fmt: skip


if __name__ == "__main__":
    main()
