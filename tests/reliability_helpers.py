"""What the reliability tests share: a tiny prepared set, and `lsvr train` in a process
of its own (so that it can be killed)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from tests.conftest import ROOT, cli
from tests.test_prepare import write_idx

CONFIG = ROOT / "configs" / "debug.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(ROOT / "src")}


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
