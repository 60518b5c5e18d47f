"""A run's checkpoint files: the keep policy spares the best and the resume point, pointers
name only their own folder's step files, and no file makes a command expand a zip bomb."""

import io
import os
import shutil
import struct
import zipfile

import pytest
import torch
from tests.support import CONFIG, cli, sets

from lsvr.errors import InputError
from lsvr.runs import checkpoints
from lsvr.runs.record import CheckpointRecord
from lsvr.safe_load import safe_load
from lsvr.train import checkpoint


def state(step: int) -> CheckpointRecord:
    return CheckpointRecord(step=step, model={"w": torch.full((4,), float(step))})


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("step-"))


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """A real run of 4 steps: step-00000002.pt and step-00000004.pt, `latest` at step 4."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli("train", CONFIG, "--out", out, *sets(tiny_data, **{"train.max_steps": 4})) == 0
    return out


@pytest.fixture
def copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def test_best_is_the_highest_top1_and_survives_the_prune(tmp_path):
    for step, top1 in ((1, 50.0), (2, 40.0), (3, 30.0)):
        checkpoint.Checkpointer(tmp_path, keep=2).save(state(step), top1=top1)
    assert names(tmp_path) == ["step-00000001.pt", "step-00000002.pt", "step-00000003.pt"]
    assert (tmp_path / "best").read_text().split() == ["step-00000001.pt", "50.0"]
    checkpoint.Checkpointer(tmp_path, keep=2).save(state(4), top1=60.0)  # a better one: the old best may go
    assert names(tmp_path) == ["step-00000003.pt", "step-00000004.pt"]


def test_a_skipped_broken_checkpoint_is_moved_aside_and_the_resume_point_kept(tmp_path, capsys):
    for step in (2, 4, 6):
        checkpoint.Checkpointer(tmp_path, keep=2).save(state(step))
    broken = tmp_path / "step-00000006.pt"
    broken.write_bytes(broken.read_bytes()[:100])
    resumed = checkpoints.find_valid(tmp_path)
    assert resumed == tmp_path / "step-00000004.pt"
    checkpoint.Checkpointer(tmp_path, keep=2).save(state(5))
    assert names(tmp_path) == ["step-00000004.pt", "step-00000005.pt", "step-00000006.pt.corrupt"]
    assert "moved aside as step-00000006.pt.corrupt" in capsys.readouterr().err
    checkpoint.Checkpointer(tmp_path, keep=2).save(state(6))
    assert names(tmp_path) == ["step-00000005.pt", "step-00000006.pt", "step-00000006.pt.corrupt"]
    assert checkpoints.load(checkpoints.find(tmp_path))["step"] == 6


@pytest.mark.slow
def test_resume_auto_past_a_truncated_newest_keeps_what_it_resumed_from(tiny_data, copy, capsys):
    folder = copy / "checkpoints"
    (folder / "step-00000004.pt").write_bytes(b"")
    args = sets(tiny_data, **{"train.max_steps": 3, "checkpoint.every_steps": 1})
    assert cli("train", CONFIG, "--out", copy, "--resume", "auto", *args) == 0
    assert names(folder) == ["step-00000002.pt", "step-00000003.pt", "step-00000004.pt.corrupt"]
    assert "resumed from" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("pointer", [os.urandom(64) + b"\xff\xfe", b"/etc/passwd\n", b"../../evil.pt\n"])
def test_a_bad_latest_pointer_falls_back_to_the_newest_step_file_in_every_command(
    tiny_data, copy, tmp_path, capsys, pointer
):
    (copy / "checkpoints" / "latest").write_bytes(pointer)
    newest = copy / "checkpoints" / "step-00000004.pt"
    assert checkpoints.find(copy) == newest and checkpoints.find_valid(copy) == newest
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("L", (32, 32)).save(image)
    resume = ("train", CONFIG, "--out", copy, "--resume", "auto", *sets(tiny_data, **{"train.max_steps": 5}))
    commands = [("eval", copy, tiny_data), ("info", copy), ("predict", copy, image),
                ("export", copy, tmp_path / "m.safetensors"), resume]  # fmt: skip
    for command in commands:
        capsys.readouterr()
        assert cli(*command) == 0, command[0]
        err = capsys.readouterr().err
        assert "latest" in err and "using the newest step file step-00000004.pt" in err, (command[0], err)
    assert checkpoints.load(checkpoints.find(copy))["step"] == 5


def test_a_pointer_outside_its_folder_is_never_followed(tmp_path, capsys):
    outside = tmp_path / "outside.pt"
    torch.save(state(9), outside)
    checkpoint.Checkpointer(tmp_path / "c", keep=2).save(state(1))
    (tmp_path / "c" / "latest").write_text(str(outside) + "\n")
    assert checkpoints.find(tmp_path / "c") == tmp_path / "c" / "step-00000001.pt"
    (tmp_path / "c" / "step-00000001.pt").unlink()
    assert checkpoints.find(tmp_path / "c") is None
    assert "no step file to use instead" in capsys.readouterr().err


def zip_bomb(source, out, megabytes: int = 64):
    """A real checkpoint's model plus `megabytes` of zeros, every member DEFLATEd: a small
    file that torch.load expands to its full declared size."""
    state = {k: v for k, v in checkpoints.load(source).items() if k in ("model", "config", "classes", "preprocess")}
    state["padding"] = torch.zeros(megabytes << 18)  # float32: 4 bytes each
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with zipfile.ZipFile(buffer) as plain, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as packed:
        for member in plain.infolist():
            packed.writestr(member.filename, plain.read(member.filename))
    return out


@pytest.mark.slow
def test_a_zip_bomb_checkpoint_is_refused_by_every_command_before_loading(tiny_data, run, tmp_path, capsys):
    bomb = zip_bomb(checkpoints.find(run), tmp_path / "bomb.pt")
    assert bomb.stat().st_size * 8 < 64 << 20  # declares 64 MB more than it holds
    commands = [("info", bomb), ("eval", bomb, tiny_data), ("predict", bomb, tiny_data / "mean.npy"),
                ("export", bomb, tmp_path / "m.safetensors"),
                ("train", CONFIG, "--out", tmp_path / "r", "--resume", bomb, *sets(tiny_data))]  # fmt: skip
    for command in commands:
        capsys.readouterr()
        assert cli(*command) == 2, command[0]
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "declares" in err[0] and "zip bomb" in err[0], (command[0], err)


def test_an_archive_declaring_gigabytes_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "declares.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data/0", b"\0" * 64)
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 3_000_000_000)  # declared uncompressed size
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="declares 3,000,000,000 bytes"):
        safe_load(path, what="checkpoint")


def test_info_verify_checks_checkpoints_and_runs(copy, capsys):
    newest = copy / "checkpoints" / "step-00000004.pt"
    assert cli("info", newest, "--verify") == 0
    assert "verified: True" in capsys.readouterr().out
    bad = checkpoints.load(newest)
    next(iter(bad["model"].values())).view(-1)[:3] = float("nan")
    torch.save(bad, newest)
    assert cli("info", newest, "--verify") == 2
    assert "holds 3 non-finite values" in capsys.readouterr().err
    (copy / "checkpoints" / "step-00000002.pt").write_bytes(b"\0" * 10)
    assert cli("info", copy, "--verify") == 2
    err = capsys.readouterr().err
    assert "step-00000002.pt: " in err and "step-00000004.pt: features.conv1.weight holds 3 non-finite" in err
    assert cli("info", copy) == 0  # without --verify: a description only


def test_info_of_an_export_reads_its_metadata(run, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert cli("export", run, out) == 0
    capsys.readouterr()
    assert cli("info", out, "--verify", "--json") == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "export" and info["model"] == "alexnet_small" and info["classes"] == 10
    assert info["step"] == 4 and info["crop"] == 28 and info["verified"] is True


def test_export_takes_the_umask_mode(run, tmp_path):
    old = os.umask(0o022)
    try:
        assert cli("export", run, tmp_path / "m.safetensors") == 0
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_init_from_a_run_folder_takes_its_latest_checkpoint(tiny_data, run, tmp_path, capsys):
    args = sets(tiny_data, **{"train.max_steps": 1, "model.init_from": run})
    assert cli("train", CONFIG, "--out", tmp_path / "next", *args) == 0
    assert f"weights from {run}" in capsys.readouterr().err


def test_a_latest_link_to_a_file_outside_is_named_never_read(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:the first line of a file outside\n")
    folder = tmp_path / "c"
    checkpoint.Checkpointer(folder, keep=2).save(state(1))
    (folder / "latest").unlink()
    (folder / "latest").symlink_to(secret)
    assert checkpoints.find(folder) == folder / "step-00000001.pt"
    err = capsys.readouterr().err
    assert "root:x" not in err and "the first line" not in err
    assert f"{folder / 'latest'} is a link (to '{str(secret)[:40]}" in err
    assert "using the newest step file step-00000001.pt" in err


def test_a_long_pointer_is_echoed_cut_short(tmp_path, capsys):
    folder = tmp_path / "c"
    checkpoint.Checkpointer(folder, keep=2).save(state(1))
    (folder / "latest").write_text("x" * 200 + "\n")
    assert checkpoints.find(folder) == folder / "step-00000001.pt"
    err = capsys.readouterr().err
    assert f"names {'x' * 40!r}..., not a step-NNNNNNNN.pt" in err and "x" * 41 not in err
