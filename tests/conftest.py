"""Shared fixtures: the embedded data prepared once per session, a tiny prepared set, a
read-only folder. The functions tests share are in tests/support.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.support import DEMO_DATA, cli, tiny_set


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    torch.set_num_threads(1)  # two cores, and results that do not depend on the thread count
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a run in this process keeps it (train.threads: 0 reads it)
    yield


@pytest.fixture(scope="session")
def demo_prepared(tmp_path_factory) -> Path:
    """The embedded Fashion-MNIST subset prepared as the demo does: OUT/train, OUT/test."""
    out = tmp_path_factory.mktemp("prepared") / "demo"
    assert cli("prepare", DEMO_DATA, out, "--size", "32", "--resize", "pad", "--no-progress") == 0
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """160 prepared 32x32 images: 5 steps of 32 an epoch (tests/support.py)."""
    return tiny_set(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder on a read-only file system (a tmpfs mounted ro): tests run as root, where
    chmod stops nothing."""
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)
