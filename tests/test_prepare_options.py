"""`lsvr prepare` refuses, naming why and before anything is written, an option that does not
apply to its source, and an empty class folder (a class without images) unless allowed."""

import numpy as np
import pytest
from tests.support import cli, one_line, write_idx, write_tree

from lsvr.data.dataset import PreparedDataset


@pytest.fixture
def photos(tmp_path):
    return write_tree(tmp_path / "photos", {"cat": 2, "dog": 2})


def _nothing_written(tmp_path, *kept):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)  # no out/, no out.partial/


@pytest.mark.parametrize(
    ("flags", "says"),
    [(("--devkit-meta", "missing.mat"), "--devkit-meta missing.mat: maps the ILSVRC2012_IDs"),
     (("--split", "test"), "--split test: picks the train or test files of a folder of idx files"),
     (("--labels", "LABELS"), "holds class folders, whose names are the labels"),
     (("--quality", "50"), "--quality 50: the JPEG quality of --encoding jpeg; this prepare stores raw pixels")],
)  # fmt: skip
def test_an_option_that_does_not_apply_to_class_folders_is_refused(tmp_path, capsys, photos, flags, says):
    labels = tmp_path / "gt.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG 0\n")
    flags = [str(labels) if f == "LABELS" else f for f in flags]
    assert cli("prepare", photos, tmp_path / "out", "--size", "16", "--no-progress", *flags) == 2
    one_line(capsys, "lsvr prepare: error: ", says)
    _nothing_written(tmp_path, "photos", "gt.txt")


def test_labels_for_idx_files_are_refused(tmp_path, capsys):
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((4, 8, 8)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(4))
    (tmp_path / "val.txt").write_text("a 0\n")
    assert cli("prepare", folder, tmp_path / "out", "--labels", tmp_path / "val.txt", "--no-progress") == 2
    one_line(capsys, "holds idx files, which carry their own labels")
    _nothing_written(tmp_path, "idx", "val.txt")


def test_allow_empty_classes_with_idx_files_is_refused(tmp_path, capsys):
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((4, 8, 8)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(4))
    assert cli("prepare", folder, tmp_path / "out", "--allow-empty-classes", "--no-progress") == 2
    one_line(capsys, "--allow-empty-classes keeps the empty class folders of a class-folder tree", "is idx files")
    _nothing_written(tmp_path, "idx")


def test_a_devkit_meta_beside_a_label_file_that_names_classes_is_refused(tmp_path, capsys, photos):
    flat = tmp_path / "val"
    flat.mkdir()
    (flat / "a.JPEG").write_bytes((photos / "cat" / "img000.JPEG").read_bytes())
    (tmp_path / "val.txt").write_text("a.JPEG cat\n")
    assert cli("prepare", flat, tmp_path / "out", "--size", "16", "--labels", tmp_path / "val.txt",
               "--devkit-meta", tmp_path / "meta.mat", "--no-progress") == 2  # fmt: skip
    one_line(capsys, "--devkit-meta", "val.txt names its classes itself")
    _nothing_written(tmp_path, "photos", "val", "val.txt")


def test_an_empty_class_folder_is_refused_naming_it(tmp_path, capsys, photos):
    (photos / "empty").mkdir()
    (photos / "empty" / ".DS_Store").write_bytes(b"")  # hidden: no image
    assert cli("prepare", photos, tmp_path / "out", "--size", "16", "--no-progress") == 2
    one_line(capsys, f"{photos / 'empty'}: an empty class folder", "--allow-empty-classes")
    _nothing_written(tmp_path, "photos")


def test_allow_empty_classes_keeps_it_as_a_class(tmp_path, capsys, photos):
    (photos / "empty").mkdir()
    out = tmp_path / "out"
    assert cli("prepare", photos, out, "--size", "16", "--allow-empty-classes", "--no-progress") == 0
    prepared = PreparedDataset(out)
    assert prepared.classes == ["cat", "dog", "empty"] and len(prepared) == 4


def test_an_empty_folder_of_a_given_class_list_is_no_class_of_its_own(tmp_path, photos):
    (photos / "empty").mkdir()
    (tmp_path / "classes.txt").write_text("cat\ndog\nempty\nfox\n")  # the list, not the folders, names the classes
    out = tmp_path / "out"
    assert cli("prepare", photos, out, "--size", "16", "--classes", tmp_path / "classes.txt", "--no-progress") == 0
    assert len(PreparedDataset(out).classes) == 4
