"""The time-to-accuracy ablation on a held-out slice: a plain recipe, then one switch added at a
time (airbench's way; a row that starts with "with" adds its switch alone to the recipe above
it), each run trained by `lsvr train` and scored by time to the target and final top-1. The test
set is never read: validation is `data.holdout` images of the training set.

python scripts/ablation.py configs/fashion_mnist_fast.yaml --out runs/ablation --target 93
python scripts/ablation.py ... --only 0,5   # the plain recipe and the fifth step alone, to rerun

Prints one JSON line per run and a Markdown table (docs/BENCHMARKS.md takes it as it is).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from lsvr.runs.metrics import read_metrics, time_to_accuracy

# The plain recipe on the config's model and data: SGD with a step schedule, no tricks. Each
# later row keeps every switch above it. Keys are `--set` items.
PLAIN = {
    "optim.schedule": "step", "optim.lr_steps": "[4,5]", "optim.peak": "0", "train.label_smoothing": "0",
    "train.channels_last": "false", "data.res_start": "0", "data.res_end": "0", "data.res_epochs": "[0,0]",
    "data.val_flip": "false", "train.ema": "0", "train.ema_halflife": "0", "data.mixup": "0", "data.cutmix": "0",
    "data.val_shift": "0", "train.val_from": "1", "model.whiten": "false", "train.lookahead_steps": "0",
}  # fmt: skip
STEPS = [
    ("plain: SGD (Nesterov), step schedule /10 at epochs 4 and 5", {}),
    ("+ channels_last", {"train.channels_last": "true"}),
    ("+ triangular schedule, peak at epoch 1", {"optim.schedule": "triangular", "optim.peak": "1"}),
    ("+ label smoothing 0.1", {"train.label_smoothing": "0.1"}),
    ("+ progressive resizing 16 -> 28 px over epochs 0-4", {"data.res_start": "16", "data.res_end": "28",
                                                           "data.res_epochs": "[0,4]"}),
    ("+ flip averaging in validation", {"data.val_flip": "true"}),
    ("+ crops shifted 1 px in validation (airbench's TTA)", {"data.val_shift": "1"}),
    ("+ whitened first conv, frozen (airbench)", {"model.whiten": "true"}),
    ("+ validation at epochs 5 and 6 only", {"train.val_from": "5"}),
    # Rows that start with "with": the recipe above and this one switch, not carried to later rows.
    ("with EMA of the weights (half-life 30,000 images)", {"train.ema_halflife": "30000"}),
    ("with Mixup 0.2", {"data.mixup": "0.2"}),
    ("with progressive resizing off (28 px throughout)", {"data.res_start": "0", "data.res_end": "0",
                                                          "data.res_epochs": "[0,0]"}),
    ("with Lookahead (k = 5, alpha = 0.5)", {"train.lookahead_steps": "5", "train.lookahead_alpha": "0.5"}),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--target", type=float, default=93.0)
    parser.add_argument("--holdout", type=int, default=5000)
    parser.add_argument("--only", help="comma-separated step numbers to run (0: the plain recipe)")
    parser.add_argument("--set", action="append", default=[], help="a further key=value for every run")
    args = parser.parse_args()
    only = {int(i) for i in args.only.split(",")} if args.only else set(range(len(STEPS)))
    switches = dict(PLAIN)
    rows = []
    for number, (label, added) in enumerate(STEPS):
        alone = label.startswith("with ")  # one switch on the recipe above, not carried on
        switches.update({} if alone else added)
        if number not in only:
            continue
        out = Path(args.out) / f"step{number}"
        items = [f"{k}={v}" for k, v in {**switches, **(added if alone else {})}.items()]
        items += [f"data.holdout={args.holdout}", *args.set]
        command = [sys.executable, "-m", "lsvr", "train", args.config, "--out", str(out)]
        for item in ["train.progress=false", *items]:
            command += ["--set", item]
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            sys.exit(f"ablation: step {number} ({label}) failed; its run folder is {out}")
        row = {"step": number, "label": label, **time_to_accuracy(read_metrics(out / "metrics.jsonl"), args.target)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n| # | recipe | s to {args.target:g}% (held out) | epoch | final top-1 | s in all |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        seconds = "not reached" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(f"| {r['step']} | {r['label']} | {seconds} | {r['epoch'] or '-'} | {r['final_top1']:.2f}% |"
              f" {r['total_seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
