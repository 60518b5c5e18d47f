"""Shared fixtures: the embedded data prepared once per session, small image trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lsvr.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = ROOT / "data" / "fashion-mnist-small"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # two cores, and results that do not depend on the thread count
    yield


@pytest.fixture(scope="session")
def demo_prepared(tmp_path_factory) -> Path:
    """The embedded Fashion-MNIST subset prepared as the demo does: OUT/train, OUT/test."""
    out = tmp_path_factory.mktemp("prepared") / "demo"
    assert main(["prepare", str(DEMO_DATA), str(out), "--size", "32", "--resize", "pad", "--no-progress"]) == 0
    return out


def cli(*args: str) -> int:
    return main([str(a) for a in args])


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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """160 prepared 32x32 images: 5 steps of 32 an epoch (tests/reliability_helpers.py)."""
    from tests.reliability_helpers import tiny_set

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
