"""What test modules share: paths, the cli in-process, small image trees and idx files, a
tiny prepared set, `lsvr train` in a process of its own (so that it can be killed) or under
torchrun, run-folder reading, and waiting for a condition. Fixtures live in conftest.py."""

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lsvr.cli import main
from lsvr.runs.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = ROOT / "data" / "fashion-mnist-small"
CONFIG = ROOT / "configs" / "debug.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(ROOT / "src")}


def cli(*args: str) -> int:
    return main([str(a) for a in args])


def one_line(capsys, *needles: str) -> str:
    """The one line a command wrote to stderr (no traceback), holding every needle."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err.strip()


def as_rank(monkeypatch, rank: int, local_rank: int, world: int = 4) -> list[bool]:
    """This process as rank `rank` (`local_rank` on its node) of a torchrun run of `world`; the
    list gets True each time it waits for torchrun to stop it (lsvr.train.launch.wait_for_stop)."""
    waited: list[bool] = []
    monkeypatch.setattr("lsvr.train.launch.wait_for_stop", lambda: waited.append(True))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    return waited


def wait_for(condition, seconds: float = 120, what: str = "the condition") -> None:
    """Poll `condition()` until it is true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.02)


def write_tree(root: Path, classes: dict[str, int], *, size=(60, 45), seed: int = 0) -> Path:
    """A class-folder tree of JPEGs whose content depends on the class (learnable)."""
    rng = np.random.default_rng(seed)
    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
            pixels[:, :, c % 3] += np.uint8(120)  # the class shows in one colour channel
            Image.fromarray(pixels).save(root / name / f"img{i:03d}.JPEG", quality=90)
    return root


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def tiny_set(folder: Path) -> Path:
    """160 images of 32x32 in 10 learnable classes: 5 steps of 32 an epoch."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 160)
    images = rng.integers(0, 80, (160, 32, 32)) + (labels[:, None, None] * 17)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    assert cli("prepare", folder, folder / "prepared", "--size", "32", "--no-progress") == 0
    return folder / "prepared"


def sets(data: Path, **extra) -> list[str]:
    """--set arguments: the tiny set, no validation, deterministic, 3 epochs, dropout on."""
    base = {"data.train": data, "data.val": "null", "train.epochs": 3, "train.max_steps": 0,
            "train.deterministic": "true", "model.dropout": 0.5, "checkpoint.every_steps": 2,
            "train.log_every": 1}  # fmt: skip
    base.update(extra)
    return [x for k, v in base.items() for x in ("--set", f"{k}={v}")]


def train_process(out: Path, data: Path, *args: str, background: bool = False, **extra):
    command = [sys.executable, "-m", "lsvr", "train", str(CONFIG), "--out", str(out), *args, *sets(data, **extra)]
    if background:
        return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    latest = (out / "checkpoints" / "latest").read_text().strip()
    return torch.load(out / "checkpoints" / latest, weights_only=True)["model"]


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def torchrun_train(out: Path, data: Path, *args: str, nproc: int = 2, restarts: int = 0, background: bool = False,
                   **extra):  # fmt: skip
    """`torchrun --standalone -m lsvr train ...`: the real command line, one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "--max-restarts", str(restarts), "-m", "lsvr", "train", str(CONFIG), "--out", str(out), *args,
               *sets(data, **{"parallel.timeout_s": 30, **extra})]  # fmt: skip
    if background:
        return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)


def uninterrupted(launch, data: Path, folder: Path) -> dict[str, torch.Tensor]:
    """The final weights of a run that nothing interrupts (launch: train_process or torchrun_train)."""
    result = launch(folder / "run", data)
    assert result.returncode == 0, result.stderr[-2000:]
    return final_weights(folder / "run")


def train(out: Path, data: Path, *args: str, **extra) -> int:
    """`lsvr train` in this process on the debug config and `sets(data, **extra)`."""
    return cli("train", CONFIG, "--out", out, *args, *sets(data, **extra))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def start_ids(out: Path) -> list[str]:
    return [r["run_id"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "start"]


def logged_steps(metrics: Path) -> int:
    """The last step metrics.jsonl logged (0 before any); a torn last line is passed over."""
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return max([json.loads(line).get("step", 0) for line in lines if line.endswith("}")] or [0])
