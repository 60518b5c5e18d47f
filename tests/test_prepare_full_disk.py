"""A disk that fills up in the middle of `lsvr prepare`: one line, exit 1, the shards
committed are kept, and the same command finishes the dataset once there is room; the result
equals an uninterrupted run's."""

import errno
import shutil
import subprocess

import numpy as np
import pytest
from tests.support import cli, write_idx

from lsvr.data import build as build_module
from lsvr.data.dataset import PreparedDataset

DATA_FILES = ("images.npy", "labels.npy", "mean.npy", "rejects.tsv")


def idx_source(folder, n=3000):
    rng = np.random.default_rng(0)
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return folder / "train-images-idx3-ubyte.gz"


def plenty_of_room(monkeypatch):
    """The free space seen at the start is enough: the disk fills while the run is going."""
    from lsvr.data import prepare as prepare_module

    real = shutil.disk_usage
    monkeypatch.setattr(prepare_module.shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 40))


def assert_stopped_then_finished(tmp_path, capsys, source, out) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err, err
    assert "images are kept" in err and "the same command continues" in err
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and (partial / "state.npz").is_file()  # the work done is kept
    return err


@pytest.mark.slow
def test_a_full_disk_mid_prepare_stops_with_one_line_and_the_same_command_finishes(tmp_path, capsys, monkeypatch):
    source = idx_source(tmp_path / "src")
    assert cli("prepare", source, tmp_path / "whole", "--size", "32", "--workers", "1", "--no-progress") == 0
    capsys.readouterr()
    real, calls = build_module.os.pwrite, []

    def pwrite(fd, data, at):  # the disk fills during the third shard's data
        calls.append(at)
        if len(calls) >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, at)

    out = tmp_path / "out"
    monkeypatch.setattr(build_module.os, "pwrite", pwrite)
    assert cli("prepare", source, out, "--size", "32", "--workers", "2", "--no-progress") == 1
    err = assert_stopped_then_finished(tmp_path, capsys, source, out)
    assert err == (
        f"lsvr prepare: stopped: {out}.partial: No space left on device; 1024 of 3000 images are kept there,"
        " and the same command continues from them once the disk has room"
    )
    monkeypatch.setattr(build_module.os, "pwrite", real)
    assert cli("prepare", source, out, "--size", "32", "--workers", "2", "--no-progress") == 0
    assert "continuing from image 1024 of 3000" in capsys.readouterr().err
    for name in DATA_FILES:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert PreparedDataset(out).verify() == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 4 MiB file system (root in a container may mount one; skipped where it may not)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (the monkeypatched test covers the same path)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.slow
def test_a_real_full_disk_keeps_the_work_and_the_run_finishes_after_room_is_made(
    tmp_path, capsys, monkeypatch, small_tmpfs
):
    source = idx_source(tmp_path / "src")
    assert cli("prepare", source, tmp_path / "whole", "--size", "48", "--workers", "1", "--no-progress") == 0
    capsys.readouterr()
    plenty_of_room(monkeypatch)
    out = small_tmpfs / "out"  # 3000 images of 48 x 48 = 6.9 MB: more than the 4 MiB disk
    assert cli("prepare", source, out, "--size", "48", "--workers", "1", "--no-progress") == 1
    assert_stopped_then_finished(tmp_path, capsys, source, out)
    subprocess.run(["mount", "-o", "remount,size=32m", str(small_tmpfs)], check=True)
    assert cli("prepare", source, out, "--size", "48", "--workers", "1", "--no-progress") == 0
    for name in DATA_FILES:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert PreparedDataset(out).verify() == []
