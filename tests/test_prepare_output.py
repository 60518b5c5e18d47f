"""What `lsvr prepare` may write and replace: never the source, never a folder lsvr did not
write (with or without --overwrite), one prepare per OUT at a time, and a refusal before any
work when OUT cannot be written."""

import errno
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from tests.support import DEMO_DATA, ROOT, cli, wait_for, write_idx, write_tree

from lsvr.data.dataset import PreparedDataset


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("where", ["source", "parent", "inside", "symlink"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_out_equal_to_inside_or_above_the_source_is_refused(tmp_path, capsys, where, overwrite):
    src = write_tree(tmp_path / "data" / "src", {"a": 2, "b": 2})
    (tmp_path / "link").symlink_to(src)
    before = files_under(tmp_path / "data")
    out = {"source": src, "parent": tmp_path / "data", "inside": src / "a" / "out", "symlink": tmp_path / "link"}
    flags = ["--overwrite"] if overwrite else []
    assert cli("prepare", src, out[where], "--size", "16", "--no-progress", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apart from the source" in err, err
    assert files_under(tmp_path / "data") == before  # nothing deleted, nothing added


def test_an_idx_folder_is_never_the_output_of_its_own_prepare(tmp_path, capsys):
    src = tmp_path / "fmnist"
    src.mkdir()
    for name in os.listdir(DEMO_DATA):
        (src / name).write_bytes((DEMO_DATA / name).read_bytes())
    before = files_under(src)
    for out in (src, tmp_path, src / "train-images-idx3-ubyte.gz"):
        assert cli("prepare", src, out, "--size", "28", "--overwrite", "--no-progress") == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert files_under(src) == before


def test_overwrite_never_deletes_a_folder_lsvr_did_not_write(tmp_path, capsys):
    src = write_tree(tmp_path / "src", {"a": 2, "b": 2})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert cli("prepare", src, mine, "--size", "16", "--overwrite", "--no-progress") == 2
    err = capsys.readouterr().err
    assert f"{mine}: it holds thesis.tex, which lsvr does not write there" in err
    assert (mine / "thesis.tex").read_text() == "years of work"
    # a user's folder that happens to be named OUT.partial
    (tmp_path / "x.partial").mkdir()
    (tmp_path / "x.partial" / "photo.jpg").write_text("mine")
    for flags in ([], ["--overwrite"]):
        assert cli("prepare", src, tmp_path / "x", "--size", "16", "--no-progress", *flags) == 2
        assert "x.partial: it holds photo.jpg" in capsys.readouterr().err
    assert (tmp_path / "x.partial" / "photo.jpg").read_text() == "mine" and not (tmp_path / "x").exists()
    # a prepared dataset with a file of the user's in it is not replaced either
    out = tmp_path / "out"
    assert cli("prepare", src, out, "--size", "16", "--no-progress") == 0
    (out / "notes.txt").write_text("keep")
    assert cli("prepare", src, out, "--size", "20", "--overwrite", "--no-progress") == 2
    assert (out / "notes.txt").read_text() == "keep" and PreparedDataset(out).shape == (16, 16, 3)


@pytest.mark.slow
def test_overwrite_replaces_lsvr_output_only_and_both_idx_splits(tmp_path):
    src = write_tree(tmp_path / "src", {"a": 2, "b": 2})
    out = tmp_path / "out"
    assert cli("prepare", src, out, "--size", "16", "--no-progress") == 0
    assert cli("prepare", src, out, "--size", "20", "--overwrite", "--no-progress") == 0
    assert PreparedDataset(out).shape == (20, 20, 3)
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]  # no lock, partial or replaced copy left
    two = tmp_path / "two"
    assert cli("prepare", DEMO_DATA, two, "--size", "32", "--resize", "pad", "--no-progress") == 0
    assert cli("prepare", DEMO_DATA, two, "--size", "28", "--overwrite", "--no-progress") == 0
    assert sorted(os.listdir(two)) == ["test", "train"]
    assert PreparedDataset(two / "train").shape == PreparedDataset(two / "test").shape == (28, 28, 1)


@pytest.mark.slow
def test_a_second_prepare_into_the_same_out_is_refused_naming_the_first(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (3000, 64, 64), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 3000))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lsvr", "prepare", str(tmp_path / "train-images-idx3-ubyte.gz"), str(out),
               "--size", "200", "--encoding", "jpeg", "--workers", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "out.partial" / "state.npz").exists() or first.poll() is not None, 60)
        first.send_signal(signal.SIGSTOP)  # paused mid-run, holding the lock, however fast the machine
        running = first.poll() is None
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=300)
    assert running, "the first prepare ended before the second started: make it longer"
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"{out}: in use by another lsvr process ({first.pid}@" in second.stderr
    assert first.returncode == 0, first_err
    assert len(PreparedDataset(out)) == 3000 and PreparedDataset(out).verify() == []
    assert sorted(os.listdir(tmp_path)) == ["out", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def refuse_source(monkeypatch):
    """Any reading of the source fails the test: the refusal must come before any work."""

    def open_source(*args, **kwargs):
        raise AssertionError("the source was opened before OUT was checked")

    monkeypatch.setattr("lsvr.data.open_source.open_source", open_source)


@pytest.fixture
def read_only(tmp_path):
    """A folder on a read-only bind mount (root writes through chmod); skipped where root may
    not mount (the monkeypatched test covers the same path)."""
    folder, view = tmp_path / "folder", tmp_path / "read-only"
    folder.mkdir()
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)


def test_a_read_only_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch, read_only):
    refuse_source(monkeypatch)
    for out in (read_only / "out", read_only / "new" / "deeper"):
        assert cli("prepare", DEMO_DATA, out, "--size", "32", "--no-progress") == 2
        err = capsys.readouterr().err.strip()
        assert (
            err == f"lsvr prepare: error: {out}: prepare output cannot be written ({read_only}: Read-only file system)"
        )
    assert os.listdir(read_only) == []


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    refuse_source(monkeypatch)

    def refuse(*args, **kwargs):  # root writes through chmod: the refusal a read-only disk gives
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.NamedTemporaryFile", refuse)
    assert cli("prepare", DEMO_DATA, tmp_path / "out", "--size", "32", "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{tmp_path / 'out'}: prepare output cannot be written" in err
    assert os.listdir(tmp_path) == []


def test_build_open_never_deletes_a_folder_without_lsvr_plan(tmp_path):
    from lsvr.data.build import Build
    from lsvr.errors import InputError

    partial = tmp_path / "x.partial"
    partial.mkdir()
    (partial / "photo.jpg").write_text("mine")
    with pytest.raises(InputError, match=r"x.partial: it holds photo.jpg, which lsvr does not write there"):
        Build.open(partial, {"encoding": "raw"}, (8, 8, 1), discard=True)
    assert (partial / "photo.jpg").read_text() == "mine"
    (partial / "photo.jpg").unlink()
    (partial / "shards").mkdir()  # what a prepare killed before its plan.json was written leaves
    assert Build.open(partial, {"encoding": "raw"}, (8, 8, 1), discard=False).done == 0
    assert sorted(os.listdir(partial)) == ["plan.json", "shards"]
