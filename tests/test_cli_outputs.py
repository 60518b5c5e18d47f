"""What the CLI writes and follows: a file the user named is never replaced without
--overwrite; `latest`/`best` pointers and exports are read where a checkpoint is expected;
an oversized image is one lsvr line; the summaries say what happened."""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from tests.support import CONFIG, ENV, cli, one_line, sets, write_tree


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data) -> Path:
    """A run of one epoch with validation, so that it has both `latest` and `best`."""
    out = tmp_path_factory.mktemp("outputs") / "run"
    args = sets(tiny_data, **{"train.epochs": 1, "data.val": tiny_data})
    assert cli("train", CONFIG, "--out", out, *args) == 0
    assert (out / "checkpoints" / "best").is_file() and (out / "checkpoints" / "latest").is_file()
    return out


# ---------------------------------------------------------------- a file the user named


@pytest.mark.slow
def test_plot_out_refuses_an_existing_file_unless_overwrite(run, tmp_path, capsys):
    photo = tmp_path / "rgb.jpg"
    photo.write_bytes(b"the user's photo")
    assert cli("plot", run, "--out", photo) == 2
    one_line(capsys, f"{photo}: exists; pass --overwrite to replace it")
    assert photo.read_bytes() == b"the user's photo"
    assert cli("plot", run, "--out", photo, "--overwrite") == 0
    assert photo.read_bytes()[:2] == b"\xff\xd8"  # now a JPEG of the plot


@pytest.mark.slow
def test_plot_without_out_redraws_its_own_file_each_time(run, capsys):
    assert cli("plot", run) == 0
    assert cli("plot", run) == 0
    assert cli("plot", run, "--out", run / "plot.png") == 0  # named, but still lsvr's own
    assert (run / "plot.png").stat().st_size > 0


def test_export_refuses_an_existing_file_unless_overwrite(run, tmp_path, capsys):
    other = tmp_path / "mymodel.safetensors"
    other.write_bytes(b"another tool's weights")
    assert cli("export", run, other) == 2
    one_line(capsys, f"{other}: exists; pass --overwrite to replace it")
    assert other.read_bytes() == b"another tool's weights"
    assert cli("export", run, other, "--overwrite") == 0
    assert other.stat().st_size > 1000


# ---------------------------------------------------------------- pointers and exports


@pytest.mark.parametrize("pointer", ["latest", "best"])
def test_a_pointer_file_is_followed_by_eval_info_and_predict(run, tiny_data, tmp_path, capsys, pointer):
    path = run / "checkpoints" / pointer
    named = path.read_text().splitlines()[0]
    capsys.readouterr()
    assert cli("eval", path, tiny_data, "--json") == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(run / "checkpoints" / named)
    assert cli("info", path, "--json") == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(run / "checkpoints" / named)


@pytest.mark.slow
def test_resume_from_a_pointer_continues_the_step_file_it_names(run, tiny_data, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(run, tmp_path / "run")
    named = (copy / "checkpoints" / "latest").read_text().strip()
    capsys.readouterr()
    args = sets(tiny_data, **{"train.epochs": 2})
    assert cli("train", CONFIG, "--out", copy, "--resume", copy / "checkpoints" / "latest", *args) == 0
    assert f"resumed from {copy / 'checkpoints' / named}" in capsys.readouterr().err


def test_init_from_a_pointer_and_from_an_export(run, tiny_data, tmp_path, capsys):
    export = tmp_path / "model.safetensors"
    assert cli("export", run, export) == 0
    for n, source in enumerate((run / "checkpoints" / "best", export)):
        capsys.readouterr()
        args = sets(tiny_data, **{"train.epochs": 1, "train.max_steps": 1, "model.init_from": source})
        assert cli("train", CONFIG, "--out", tmp_path / f"run{n}", *args) == 0
        assert f"weights from {source}" in capsys.readouterr().err


def test_a_pointer_that_leads_out_of_its_folder_is_refused(run, tiny_data, tmp_path, capsys):
    import shutil

    folder = shutil.copytree(run / "checkpoints", tmp_path / "checkpoints")
    (folder / "best").write_text("../../etc/passwd\n0.5\n")
    assert cli("eval", folder / "best", tiny_data) == 2
    one_line(capsys, f"{folder / 'best'}: a checkpoint pointer that names", "not a step-NNNNNNNN.pt file")


def test_resume_from_an_export_says_it_holds_weights_only(run, tiny_data, tmp_path, capsys):
    export = tmp_path / "model.safetensors"
    assert cli("export", run, export) == 0
    capsys.readouterr()
    assert cli("train", CONFIG, "--out", tmp_path / "again", "--resume", export, *sets(tiny_data)) == 2
    one_line(capsys, f"{export}: an export holds weights only and cannot be resumed from", "model.init_from=")


def test_info_of_an_export_leaves_out_what_it_does_not_carry(run, tmp_path, capsys):
    export = tmp_path / "model.safetensors"
    assert cli("export", run, export) == 0
    capsys.readouterr()
    assert cli("info", export) == 0
    out = capsys.readouterr().out
    assert "kind: export" in out and "step:" in out
    assert "None" not in out and "epoch" not in out and "commit" not in out and "lsvr_version" not in out


# ---------------------------------------------------------------- oversized images


def _big_png(width: int = 12000, height: int = 9000) -> bytes:
    """A PNG header declaring width x height (108 Mpx): over Pillow's warning limit, under its
    error limit; the few bytes of data are enough for Pillow to open it and warn."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def _lsvr(*args) -> subprocess.CompletedProcess:
    # a process of its own: pytest's own warning capture would hide what a user sees
    command = [sys.executable, "-m", "lsvr", *map(str, args)]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_an_oversized_image_is_lsvr_lines_only(run, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(_big_png())
    done = _lsvr("predict", run, big)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines == [
        f"lsvr predict: error: {big}: 12000x9000 pixels is over the 89478485 limit",
        "lsvr predict: 1 of 1 images could not be read",
    ], done.stderr
    tree = write_tree(tmp_path / "tree", {"a": 2, "b": 2})
    (tree / "a" / "big.png").write_bytes(_big_png())
    done = _lsvr("prepare", tree, tmp_path / "set", "--size", "16", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "DecompressionBomb" not in done.stderr and "warnings.warn" not in done.stderr, done.stderr
    assert "1 rejected: 1 too-large" in done.stdout


# ---------------------------------------------------------------- what the summaries say


def test_rerunning_the_same_prepare_says_already_prepared(tmp_path, capsys):
    src = write_tree(tmp_path / "src", {"a": 2, "b": 2})
    assert cli("prepare", src, tmp_path / "out", "--size", "16", "--no-progress") == 0
    assert capsys.readouterr().out.startswith("prepared 4 images of 2 classes")
    assert cli("prepare", src, tmp_path / "out", "--size", "16", "--no-progress") == 0
    assert capsys.readouterr().out == f"already prepared: 4 images of 2 classes in {tmp_path / 'out'}\n"


@pytest.mark.slow
def test_eval_of_a_folder_of_splits_names_the_splits(run, demo_prepared, capsys):
    assert cli("eval", run, demo_prepared) == 2
    one_line(capsys, f"{demo_prepared}: holds prepared splits", f"{demo_prepared / 'test'}, {demo_prepared / 'train'}")


def test_predict_of_a_class_folder_tree_names_a_subfolder(run, tmp_path, capsys):
    tree = write_tree(tmp_path / "tree", {"a": 2, "b": 2})
    assert cli("predict", run, tree) == 2
    one_line(capsys, f"{tree}: holds no images but subfolders that do (a, b)", f"e.g. {tree / 'a'}")
