"""prepare's free-space check before any work: a margin in proportion to the dataset (a small
set fits a small disk), a refusal naming OUT, and nothing left behind by a refused prepare."""

import os
import shutil

import pytest
from tests.support import DEMO_DATA, cli, write_tree

from lsvr.data import prepare as prepare_module
from lsvr.data.dataset import PreparedDataset


def disk_with(monkeypatch, free: int) -> list:
    """The disk seen by prepare has `free` bytes; returns the folders it was asked about."""
    real, asked = shutil.disk_usage, []

    def usage(path):
        asked.append(path)
        return real(path)._replace(free=free)

    monkeypatch.setattr(prepare_module.shutil, "disk_usage", usage)
    return asked


def test_a_small_dataset_fits_a_small_disk(tmp_path, monkeypatch):
    src = write_tree(tmp_path / "src", {"a": 6, "b": 6})
    disk_with(monkeypatch, 20_000_000)  # 12 images of 32 x 32 x 3: 37 KB
    assert cli("prepare", src, tmp_path / "out", "--size", "32", "--no-progress") == 0
    assert len(PreparedDataset(tmp_path / "out")) == 12


@pytest.mark.parametrize("idx_folder", [False, True])
def test_a_refusal_names_out_and_leaves_no_folder_it_created(tmp_path, capsys, monkeypatch, idx_folder):
    src = DEMO_DATA if idx_folder else write_tree(tmp_path / "src", {"a": 6, "b": 6})
    disk_with(monkeypatch, 100_000)
    out = tmp_path / "new" / "deeper" / "out"
    assert cli("prepare", src, out, "--size", "64", "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    target = out / "train" if idx_folder else out
    needs = "41.2 MiB" if idx_folder else "1.1 MiB"
    assert err == f"lsvr prepare: error: {target}: the dataset needs about {needs}, the disk has 0.1 MiB free"
    assert sorted(os.listdir(tmp_path)) == ([] if idx_folder else ["src"])
