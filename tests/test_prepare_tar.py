"""ImageNet straight from its downloads: the nested train tar, the flat val tar with the
devkit's .tar.gz, read in place, prepare to the bytes the same images in folders give; damage
inside a tar is a reject line, never a crash."""

import io
import signal
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from tests.ilsvrc_tars import WNIDS, add, image_bytes, tar_bytes, write_ilsvrc
from tests.support import ENV, cli, one_line, wait_for
from tests.test_prepare_resume import committed

from lsvr.data.dataset import PreparedDataset

DATA_FILES = ("images.bin", "offsets.npy", "labels.npy", "mean.npy")
ARGS = ("--size", "32", "--encoding", "jpeg", "--no-progress", "--workers", "2")


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    paths = write_ilsvrc(root)
    assert cli("prepare", paths["train_dir"], root / "folder_train", *ARGS) == 0
    assert cli("prepare", paths["train"], root / "tar_train", *ARGS) == 0
    return root, paths


def same_data(a, b) -> None:
    for name in DATA_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = PreparedDataset(a).meta, PreparedDataset(b).meta
    for key in ("classes", "num_images", "channel_mean", "channel_std", "image_shape"):
        assert ma[key] == mb[key], key


def test_the_nested_train_tar_prepares_to_the_bytes_of_its_folders(ilsvrc):
    root, _ = ilsvrc
    same_data(root / "folder_train", root / "tar_train")
    ds = PreparedDataset(root / "tar_train")
    assert ds.classes == WNIDS and ds.meta["num_rejected"] == 0  # CMYK, PNG-as-JPEG and grey all decode
    assert ds.meta["num_images"] == 15


def test_the_val_tar_with_the_devkit_tar_gz_prepares_as_the_val_folder(ilsvrc):
    root, paths = ilsvrc
    train = root / "tar_train"
    assert cli("prepare", paths["val"], root / "tar_val", *ARGS, "--labels", paths["devkit"],
               "--classes-from", train) == 0  # fmt: skip
    assert cli("prepare", paths["val_dir"], root / "folder_val", *ARGS, "--labels", paths["truth"],
               "--classes-from", train) == 0  # fmt: skip
    same_data(root / "folder_val", root / "tar_val")
    labels = PreparedDataset(root / "tar_val").labels
    assert np.array_equal(labels, paths["expected_val"])  # through meta.mat's order, not the sorted wnids


def test_the_val_tar_takes_the_other_label_forms(ilsvrc, tmp_path):
    root, paths = ilsvrc
    lines = ["ImageId,PredictionString"] + [
        f"ILSVRC2012_val_{k:08d},{WNIDS[label]} 1 2 3 4" for k, label in enumerate(paths["expected_val"], start=1)
    ]
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    assert cli("prepare", paths["val"], tmp_path / "val", *ARGS, "--labels", tmp_path / "LOC_val_solution.csv",
               "--classes-from", root / "tar_train") == 0  # fmt: skip
    assert np.array_equal(PreparedDataset(tmp_path / "val").labels, paths["expected_val"])


def test_a_folder_of_class_tars_is_the_outer_tar_unpacked_once(ilsvrc, tmp_path):
    root, paths = ilsvrc
    with tarfile.open(paths["train"]) as outer:
        outer.extractall(tmp_path / "class_tars", filter="data")
    assert cli("prepare", tmp_path / "class_tars", tmp_path / "out", *ARGS) == 0
    same_data(root / "folder_train", tmp_path / "out")


def damaged_train(path, *, cut_inner: bool, at_header: bool = False) -> None:
    """An outer tar whose second class's inner tar is cut (cut_inner), or an outer tar itself
    cut inside its last inner tar: mid-member, or at_header (where a tar can only tell by the
    missing end blocks); a directory named like an image, a link and a plain folder entry in
    the first class."""
    rng = np.random.default_rng(1)
    first = io.BytesIO()
    with tarfile.open(fileobj=first, mode="w") as inner:
        for k in range(3):
            add(inner, f"n01_{k}.JPEG", image_bytes(rng, 0))
        for name, kind in (("sub", tarfile.DIRTYPE), ("odd.JPEG", tarfile.DIRTYPE), ("link.JPEG", tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "n01_0.JPEG"
            inner.addfile(info)
    files = {f"n02_{k}.JPEG": image_bytes(rng, 0) for k in range(4)}
    second = tar_bytes(files)
    cut = sum(512 + -(-len(data) // 512) * 512 for data in list(files.values())[:2])  # the third member's header
    cut += 0 if at_header else 700
    with tarfile.open(path, "w") as outer:
        add(outer, "n01.tar", first.getvalue())
        add(outer, "n02.tar", second[:cut] if cut_inner else second)
    if not cut_inner:
        data = path.read_bytes()
        path.write_bytes(data[: 1024 + len(first.getvalue()) + 512 + cut])


@pytest.mark.parametrize(("cut_inner", "at_header"), [(True, False), (True, True), (False, False), (False, True)],
                         ids=["inner-mid-member", "inner-at-header", "outer-mid-member", "outer-at-head"])  # fmt: skip
def test_a_cut_tar_keeps_what_comes_before_the_damage_and_names_it_once(tmp_path, capsys, cut_inner, at_header):
    damaged_train(tmp_path / "train.tar", cut_inner=cut_inner, at_header=at_header)
    assert cli("prepare", tmp_path / "train.tar", tmp_path / "out", *ARGS) == 2  # a cut source: only when allowed
    one_line(capsys, "train.tar:n02.tar:", "--allow-cut")
    assert cli("prepare", tmp_path / "train.tar", tmp_path / "out", *ARGS, "--allow-cut") == 0
    ds = PreparedDataset(tmp_path / "out")
    rejects = (tmp_path / "out" / "rejects.tsv").read_text().splitlines()[1:]
    by_kind = {line.split("\t")[1]: line.split("\t")[0] for line in rejects}
    assert by_kind["directory"] == "train.tar:n01.tar:odd.JPEG"
    assert by_kind["unreadable"] == "train.tar:n01.tar:link.JPEG"
    damage = [line for line in rejects if line.split("\t")[1] in ("truncated", "damaged-tar")]
    assert len(damage) == 1 and damage[0].startswith("train.tar:n02.tar:"), rejects
    assert ds.classes == ["n01", "n02"]
    kept = np.bincount(ds.labels, minlength=2)
    assert kept[0] == 3 and kept[1] == 2, kept  # the second class's whole members before the cut


def test_bad_tar_input_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "fake.tar").write_bytes(b"not a tar at all" * 100)
    assert cli("prepare", tmp_path / "fake.tar", tmp_path / "out", "--no-progress") == 2
    one_line(capsys, "fake.tar", "not a readable tar")
    (tmp_path / "flat.tar").write_bytes(tar_bytes({"a.JPEG": image_bytes(np.random.default_rng(0), 0)}))
    assert cli("prepare", tmp_path / "flat.tar", tmp_path / "out", "--no-progress") == 2
    one_line(capsys, "flat.tar", "--labels")
    assert cli("prepare", str(tmp_path / "shard-{000000..000003}.tar"), tmp_path / "out", "--no-progress") == 2
    one_line(capsys, "shard-000000.tar", "no such shard", "4 of the 4")
    assert not (tmp_path / "out").exists()


def test_max_rejects_counts_the_members_of_a_tar(tmp_path, capsys):
    damaged_train(tmp_path / "train.tar", cut_inner=True)
    assert cli("prepare", tmp_path / "train.tar", tmp_path / "out", *ARGS, "--max-rejects", "0.1", "--allow-cut") == 2
    one_line(capsys, "train.tar", "over --max-rejects 0.1")


@pytest.mark.slow
def test_a_tar_prepare_killed_mid_run_resumes_to_the_same_bytes(tmp_path):
    rng = np.random.default_rng(2)
    with tarfile.open(tmp_path / "train.tar", "w") as outer:
        for c in range(3):
            files = {f"n0{c}_{k}.JPEG": image_bytes(rng, 0) for k in range(500)}
            add(outer, f"n0{c}.tar", tar_bytes(files))
    args = ["prepare", str(tmp_path / "train.tar"), "--size", "96", "--encoding", "jpeg", "--no-progress",
            "--workers", "1"]  # fmt: skip
    assert cli(*args[:2], tmp_path / "whole", *args[2:]) == 0
    out, partial = tmp_path / "killed", tmp_path / "killed.partial"
    command = [sys.executable, "-m", "lsvr", *args[:2], str(out), *args[2:]]
    process = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: process.poll() is not None or committed(partial) >= 1, 120, "a committed shard")
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and committed(partial) >= 1
    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "continuing from image" in again.stderr, again.stderr
    for name in (*DATA_FILES, "rejects.tsv"):
        assert (tmp_path / "whole" / name).read_bytes() == (out / name).read_bytes(), name
