"""Time to a target top-1 for one or more run folders, and the median over them.

python scripts/time_to_accuracy.py --target 93 runs/fmnist-seed0 runs/fmnist-seed1 runs/fmnist-seed2
"""

import argparse
import json
import math
import statistics
from pathlib import Path

from lsvr.runs.metrics import read_metrics, time_to_accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--target", type=float, default=93.0)
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        row = {"run": run, **time_to_accuracy(read_metrics(Path(run) / "metrics.jsonl"), args.target)}
        rows.append(row)
        print(json.dumps(row))
    # A run that never reached the target counts as infinitely slow: the median is still
    # defined while at least half of the runs reached it.
    times = [r["seconds"] if r["seconds"] is not None else math.inf for r in rows]
    median = statistics.median(times)
    summary = {
        "runs": len(rows),
        "reached": sum(t != math.inf for t in times),
        "median_seconds": None if median == math.inf else median,
        "median_final_top1": statistics.median(r["final_top1"] for r in rows),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
