"""SIGTERM at random moments of `lsvr train`'s start-up: every try must end cleanly.

    python scripts/sigterm_tries.py --tries 100 [--parallel 3] [--seed 0] [--work /tmp/sigterm-tries]

Each try starts `lsvr train configs/debug.yaml` (100 steps asked, on the embedded Fashion-MNIST
subset, prepared once into WORK) and sends it SIGTERM after a delay drawn uniformly from
[0, 1.3 T], T the time from spawn to the run's start line (`lsvr train: run ...`), measured
by a first run and updated by the tries that reach it. A try ends as one of:

  143-one-line             exit 143, stderr exactly `lsvr train: stopped during start-up; nothing to save`
  0-checkpoint             exit 0 after `stopped by SIGTERM at step N; checkpoint saved`
  killed-before-lsvr-code  killed by the signal with no output and nothing written: it came before
                           the interpreter reached lsvr's first line (SIGTERM's default action)
  traceback / other        a failure: printed in full at the end

The counts are printed last; the exit status is 1 where any try was a traceback or other.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STOP_LINE = "lsvr train: stopped during start-up; nothing to save"
CLEAN = ("143-one-line", "0-checkpoint", "killed-before-lsvr-code")


def classify(status: int, err: str, out: Path) -> str:
    lines = err.strip().splitlines()
    saved = list((out / "checkpoints").glob("step-*.pt")) if (out / "checkpoints").is_dir() else []
    if "Traceback" in err:
        return "traceback"
    if status == 143 and lines == [STOP_LINE] and not saved:
        return "143-one-line"
    if status == 0 and saved and "stopped by SIGTERM" in err and "checkpoint saved" in err:
        return "0-checkpoint"
    if status == -signal.SIGTERM and not err and not out.exists():
        return "killed-before-lsvr-code"
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=1, help="tries at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/sigterm-tries"))
    args = parser.parse_args()
    lsvr = [sys.executable, "-m", "lsvr"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    data = args.work / "demo"
    if not (data / "train" / "meta.json").is_file():
        subprocess.run([*lsvr, "prepare", str(ROOT / "data" / "fashion-mnist-small"), str(data), "--size", "32",
                        "--resize", "pad", "--no-progress"], env=env, check=True)  # fmt: skip
    rng, lock = random.Random(args.seed), threading.Lock()
    starts: list[float] = []
    counts: dict[str, int] = {}
    failures: list[str] = []

    def attempt(i: int, out: Path, delay: float | None) -> None:
        shutil.rmtree(out, ignore_errors=True)
        command = [*lsvr, "train", str(ROOT / "configs" / "debug.yaml"), "--out", str(out), "--set",
                   f"data.train={data / 'train'}", "data.val=null", "train.max_steps=0", "train.epochs=20",
                   "checkpoint.every_steps=1000"]  # fmt: skip
        began = time.monotonic()
        run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        started: list[float] = []

        def read() -> None:
            for line in run.stderr:
                if line.startswith("lsvr train: run "):
                    started.append(time.monotonic() - began)
                lines.append(line)

        reader = threading.Thread(target=read)
        reader.start()
        if delay is None:  # the first run: until its start line
            while not started and run.poll() is None:
                time.sleep(0.05)
        else:
            time.sleep(delay)
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(timeout=600)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        reader.join()
        kind = classify(run.returncode, "".join(lines), out)
        with lock:
            starts.extend(started[:1])
            if delay is None:
                return
            counts[kind] = counts.get(kind, 0) + 1
            if kind not in CLEAN[:2]:
                failures.append(f"try {i}: delay {delay:.3f} s, status {run.returncode}, {kind}\n{''.join(lines)}")
            print(f"{i:4d} delay {delay:7.3f} s  status {run.returncode:4d}  {kind}", flush=True)

    attempt(-1, args.work / "first", None)
    if not starts:
        print("the first run never reached its start line", file=sys.stderr)
        return 1
    todo = list(range(args.tries))

    def worker(w: int) -> None:
        while True:
            with lock:
                if not todo:
                    return
                i, top = todo.pop(0), 1.3 * statistics.median(starts[-9:])
                delay = rng.uniform(0, top)
            attempt(i, args.work / f"try{w}", delay)

    workers = [threading.Thread(target=worker, args=(w,)) for w in range(args.parallel)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for text in failures:
        print(text)
    print(f"start line reached {min(starts):.2f}..{max(starts):.2f} s after spawn; load now {os.getloadavg()[0]:.1f}")
    print("counts:", ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())), f"(of {args.tries})")
    return 1 if any(kind not in CLEAN for kind in counts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
