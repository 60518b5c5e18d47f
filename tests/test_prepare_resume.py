"""A prepare killed again and again (kill -9, Ctrl-C) continues where it stopped, and its
result equals an uninterrupted run's, whatever the worker count."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tests.support import ROOT, cli, wait_for, write_idx

from lsvr.data.build import Build
from lsvr.data.dataset import PreparedDataset

DATA_FILES = ("images.bin", "offsets.npy", "labels.npy", "mean.npy", "rejects.tsv")


def committed(partial) -> int:
    try:
        with np.load(partial / "state.npz") as state:
            return int(state["counts"][0])
    except (OSError, ValueError, KeyError, EOFError):
        return -1


def interruptible() -> None:
    """In the child: SIGINT as at a terminal. A shell's background job (`make test &`) starts with
    SIGINT ignored, which its children inherit: Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_killed_prepare_resumes_to_the_same_bytes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5000, 64, 64), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 5000))
    source = tmp_path / "train-images-idx3-ubyte.gz"
    args = ["prepare", str(source), "--size", "160", "--encoding", "jpeg", "--no-progress"]
    assert cli(*args[:2], tmp_path / "whole", *args[2:], "--workers", "2") == 0

    out, partial = tmp_path / "killed", tmp_path / "killed.partial"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "lsvr", *args[:2], str(out), *args[2:], "--workers", "1"]
    randomness = random.Random(0)
    kills = {"SIGKILL": 0, "SIGINT": 0}

    def enough() -> bool:
        return kills["SIGKILL"] >= 3 and kills["SIGINT"] >= 1

    for attempt in range(60):
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=interruptible)  # fmt: skip
        start = committed(partial)
        wait_for(lambda p=process, s=start: p.poll() is not None or committed(partial) > s, 60)
        time.sleep(randomness.uniform(0, 0.15))  # mid-shard, mid-commit, or during the final steps
        sig = signal.SIGINT if attempt % 3 == 2 else signal.SIGKILL
        if process.poll() is None:
            process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        if process.returncode == 0 or (out / "meta.json").is_file():
            # it finished before the signal landed, or the signal struck after OUT was in place
            if enough():
                break
            shutil.rmtree(out)  # too few signals landed (a busy machine runs ahead): prepare it again
            continue
        assert process.returncode in (-signal.SIGKILL, 130), (process.returncode, err)
        kills[sig.name] += 1
        if sig == signal.SIGINT:
            assert process.returncode == 130 and "the same command continues" in err, err
    last = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # finishes, or says done
    assert last.returncode == 0, last.stderr
    assert enough(), kills
    assert not partial.exists()
    for name in DATA_FILES:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    meta_whole = json.loads((tmp_path / "whole" / "meta.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["checksums"] == meta_whole["checksums"]
    assert {k: v for k, v in meta.items() if k != "created"} == {k: v for k, v in meta_whole.items() if k != "created"}
    assert PreparedDataset(out).verify() == []


def test_a_different_command_does_not_continue_an_unfinished_prepare(tmp_path, capsys):
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 20))
    source = tmp_path / "train-images-idx3-ubyte.gz"
    partial = tmp_path / "out.partial"
    Build.open(partial, {"encoding": "raw", "size": 99}, (99, 99, 1), discard=False)
    assert cli("prepare", source, tmp_path / "out", "--size", "28", "--no-progress") == 2
    assert "--overwrite" in capsys.readouterr().err and partial.exists()
    assert cli("prepare", source, tmp_path / "out", "--size", "28", "--overwrite", "--no-progress") == 0
    assert len(PreparedDataset(tmp_path / "out")) == 20 and not partial.exists()
