"""ONNX Runtime against torch on the CPU: images per second of the same model on the same batch.

    python scripts/onnx_speed.py [--models resnet50 resnet18] [--crop 224] [--batch 32] [--rounds 7]
                                 [--threads 0] [--out onnx_speed.jsonl]

Each model (seeded random weights, 1000 classes, channel statistics) is exported as
`lsvr export OUT.onnx` exports it (lsvr.export_onnx.export_onnx); then, in interleaved rounds
(torch, onnxruntime, next model, ...; one warm-up round first), one uint8 batch is scored by
lsvr's torch path (Augment's normalisation, then the model, under inference_mode: what
`lsvr predict CHECKPOINT` runs) and by onnxruntime's CPU provider on the graph (normalisation
inside: what `lsvr predict OUT.onnx` runs), both with the same intra-op thread count. Prints one
line per model (median images/s of each, their ratio, the max |logit difference|) and writes
them as JSON lines with the machine, its load, torch's and onnxruntime's versions and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from lsvr.data.draws import Draws
from lsvr.export_onnx import export_onnx
from lsvr.inference import augment_for
from lsvr.models.registry import IMAGENET_MEAN, IMAGENET_STD, build_model
from lsvr.preprocess import Preprocess
from lsvr.runs.record import CheckpointRecord


def commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           cwd=Path(__file__).parent)  # fmt: skip
    return found.stdout.strip() or "unknown"


def prepared(name: str, *, crop: int, folder: Path) -> dict:
    """The model, its record, and an onnxruntime session on its export."""
    pre = Preprocess(classes=tuple(f"c{i}" for i in range(1000)), size=crop, channels=3, resize="squash",
                     crop=crop, eval_size=crop, eval_crop=crop, normalize="channel",
                     channel_mean=tuple(255 * m for m in IMAGENET_MEAN),
                     channel_std=tuple(255 * s for s in IMAGENET_STD))  # fmt: skip
    torch.manual_seed(0)
    model = build_model(name, num_classes=1000, in_channels=3, crop=crop, dropout=0.0).eval()
    state = CheckpointRecord(model=model.state_dict(), config={"model": {"name": name}}, preprocess=pre)
    started = time.perf_counter()
    out = export_onnx(model, state, folder / f"{name}.onnx")
    exported_s = time.perf_counter() - started
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    return {"model": model, "pre": pre, "session": session, "export_s": exported_s, "mb": out.stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet18"])
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of both (0: torch's default)")
    parser.add_argument("--out", default="onnx_speed.jsonl")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    images = torch.randint(
        0, 256, (args.batch, args.crop, args.crop, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )  # (B, crop, crop, C), as the loader gives
    pixels = images.permute(0, 3, 1, 2).contiguous().numpy()  # (B, C, crop, crop): the graph's input
    draws = Draws.centred(np.full((args.batch, 2), args.crop), resize=args.crop, crop=args.crop)
    with tempfile.TemporaryDirectory() as folder:
        runs = {name: prepared(name, crop=args.crop, folder=Path(folder)) for name in args.models}
        times: dict[str, dict[str, list[float]]] = {name: {"torch": [], "onnxruntime": []} for name in runs}
        worst, largest = {}, {}  # max |logit difference|; max |logit|, its scale
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for name, run in runs.items():
                augment = augment_for(run["pre"], cpu)
                started = time.perf_counter()
                with torch.inference_mode():
                    expected = run["model"](augment.apply(images.clone(), draws))
                took_torch = time.perf_counter() - started
                started = time.perf_counter()
                (got,) = run["session"].run(["logits"], {"images": pixels})
                took_ort = time.perf_counter() - started
                if round_:
                    times[name]["torch"].append(took_torch)
                    times[name]["onnxruntime"].append(took_ort)
                worst[name] = max(worst.get(name, 0.0), float(np.abs(got - expected.numpy()).max()))
                largest[name] = float(expected.abs().max())
    load = os.getloadavg()[0]
    with open(args.out, "a") as f:
        for name, run in runs.items():
            speed = {k: args.batch / statistics.median(v) for k, v in times[name].items()}
            row = {"model": name, "crop": args.crop, "batch": args.batch, "rounds": args.rounds,
                   "threads": torch.get_num_threads(), "torch_images_per_sec": round(speed["torch"], 1),
                   "onnxruntime_images_per_sec": round(speed["onnxruntime"], 1),
                   "ratio": round(speed["onnxruntime"] / speed["torch"], 3), "max_logit_difference": worst[name],
                   "max_logit": largest[name],
                   "export_s": round(run["export_s"], 1), "onnx_mb": round(run["mb"], 1), "load_1min": load,
                   "cpus": os.cpu_count(), "machine": platform.node(), "torch": torch.__version__,
                   "onnxruntime": ort.__version__, "commit": commit()}  # fmt: skip
            f.write(json.dumps(row) + "\n")
            print(f"{name} {args.crop} px batch {args.batch}, {row['threads']} threads: torch"
                  f" {row['torch_images_per_sec']} images/s, onnxruntime {row['onnxruntime_images_per_sec']}"
                  f" ({row['ratio']}x); max |logit difference| {worst[name]:.1e} (of logits up to {largest[name]:.1f});"
                  f" load {load:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
