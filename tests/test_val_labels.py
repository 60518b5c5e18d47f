"""A flat ILSVRC val/ folder labelled by each of the three label-file forms."""

import numpy as np
import pytest
from scipy.io import savemat
from tests.support import cli, write_tree

from lsvr.data.dataset import PreparedDataset

WNIDS = ["n01000000", "n02000000", "n03000000"]  # sorted: the train class order
TRUTH = ["n03000000", "n01000000", "n02000000", "n02000000", "n03000000", "n01000000"]
DEVKIT_ORDER = ["n03000000", "n01000000", "n02000000"]  # ILSVRC2012_ID 1, 2, 3: NOT sorted


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """prepared train (3 wnids) and a flat val/ of 6 images named as ILSVRC's."""
    root = tmp_path_factory.mktemp("ilsvrc")
    write_tree(root / "train", dict.fromkeys(WNIDS, 2))
    assert cli("prepare", root / "train", root / "prepared_train", "--size", "16", "--no-progress") == 0
    (root / "val").mkdir()
    for k, wnid in enumerate(TRUTH, start=1):  # copy a training image of the right class
        source = root / "train" / wnid / f"img{k % 2:03d}.JPEG"
        (root / "val" / f"ILSVRC2012_val_{k:08d}.JPEG").write_bytes(source.read_bytes())
    return root


def write_devkit(folder, ids):
    folder.mkdir(exist_ok=True)
    synsets = np.array(
        [(i + 1, wnid, f"words {i}") for i, wnid in enumerate(DEVKIT_ORDER)],
        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")],
    )
    savemat(folder / "meta.mat", {"synsets": synsets})
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in ids))
    return folder / "ILSVRC2012_validation_ground_truth.txt"


def expected_labels():
    return np.array([WNIDS.index(w) for w in TRUTH])


def check(out, root):
    ds = PreparedDataset(out)
    train = PreparedDataset(root / "prepared_train")
    assert ds.classes == train.classes == WNIDS
    assert np.array_equal(ds.labels, expected_labels())


def test_caffe_val_txt_maps_indices_through_train_classes(layout, tmp_path):
    labels = tmp_path / "val.txt"
    labels.write_text("".join(f"ILSVRC2012_val_{k:08d}.JPEG {WNIDS.index(w)}\n" for k, w in enumerate(TRUTH, 1)))
    out = tmp_path / "val_out"
    assert cli("prepare", layout / "val", out, "--size", "16", "--labels", labels,
               "--classes-from", layout / "prepared_train", "--no-progress") == 0  # fmt: skip
    check(out, layout)


def test_loc_val_solution_csv(layout, tmp_path):
    labels = tmp_path / "LOC_val_solution.csv"
    rows = [f"ILSVRC2012_val_{k:08d},{w} 1 2 30 40 {w} 5 6 7 8" for k, w in enumerate(TRUTH, 1)]
    labels.write_text("ImageId,PredictionString\n" + "\n".join(reversed(rows)) + "\n")
    out = tmp_path / "val_out"
    assert cli("prepare", layout / "val", out, "--size", "16", "--labels", labels,
               "--classes-from", layout / "prepared_train", "--no-progress") == 0  # fmt: skip
    check(out, layout)


def test_devkit_ids_go_through_meta_mat_not_sorted_order(layout, tmp_path):
    ids = [DEVKIT_ORDER.index(w) + 1 for w in TRUTH]
    truth = write_devkit(tmp_path / "devkit", ids)
    out = tmp_path / "val_out"
    assert cli("prepare", layout / "val", out, "--size", "16", "--labels", truth,
               "--classes-from", layout / "prepared_train", "--no-progress") == 0  # fmt: skip
    check(out, layout)
    # read naively as indices into the sorted wnids, every label would be wrong
    assert np.all(np.array(ids) - 1 != expected_labels())


def test_val_in_class_folders_takes_train_classes(layout, tmp_path):
    val = write_tree(tmp_path / "val", {"n02000000": 2})  # one class only: still indexed as train's
    out = tmp_path / "val_out"
    assert cli("prepare", val, out, "--size", "16", "--classes-from", layout / "prepared_train", "--no-progress") == 0
    ds = PreparedDataset(out)
    assert ds.classes == WNIDS and set(ds.labels.tolist()) == {1}


@pytest.mark.parametrize("case", ["unknown_class", "unlabelled_image", "missing_image", "indices_without_classes",
                                  "no_meta", "no_labels"])  # fmt: skip
def test_label_problems_are_found_at_prepare_time(layout, tmp_path, capsys, case):
    labels = tmp_path / "val.txt"
    lines = [f"ILSVRC2012_val_{k:08d}.JPEG {w}" for k, w in enumerate(TRUTH, 1)]
    args = ["--classes-from", layout / "prepared_train"]
    if case == "unknown_class":
        lines[2] = "ILSVRC2012_val_00000003.JPEG n09999999"
    elif case == "unlabelled_image":
        del lines[4]
    elif case == "missing_image":
        lines.append("ILSVRC2012_val_00000099.JPEG n01000000")
    elif case == "indices_without_classes":
        lines = [f"ILSVRC2012_val_{k:08d}.JPEG {WNIDS.index(w)}" for k, w in enumerate(TRUTH, 1)]
        args = []
    labels.write_text("\n".join(lines) + "\n")
    if case == "no_meta":
        labels = tmp_path / "gt" / "ILSVRC2012_validation_ground_truth.txt"
        labels.parent.mkdir()
        labels.write_text("1\n2\n3\n3\n1\n2\n")
    label_args = [] if case == "no_labels" else ["--labels", labels]
    out = tmp_path / "val_out"
    assert cli("prepare", layout / "val", out, "--size", "16", *label_args, *args, "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    expected = {
        "unknown_class": "n09999999", "unlabelled_image": "ILSVRC2012_val_00000005.JPEG",
        "missing_image": "ILSVRC2012_val_00000099", "indices_without_classes": "--classes-from",
        "no_meta": "meta.mat", "no_labels": "--labels",
    }[case]  # fmt: skip
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()
