"""A prepared set damaged after `lsvr prepare`: one line naming the file (or the row), exit 2,
never a traceback; data.bad_records=skip trains past rows that do not decode."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.support import CONFIG, cli, sets, write_idx

from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError

BAD_ROW = 7


@pytest.fixture(scope="module")
def jpeg_set(tmp_path_factory) -> Path:
    """160 learnable 32x32 images prepared as JPEG records."""
    folder = tmp_path_factory.mktemp("jpeg")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 160)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 80, (160, 32, 32)) + labels[:, None, None] * 17)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    assert cli("prepare", folder, folder / "prepared", "--size", "32", "--encoding", "jpeg", "--no-progress") == 0
    return folder / "prepared"


def zeroed(source: Path, folder: Path, row: int = BAD_ROW) -> Path:
    """A copy of a JPEG set with one record's bytes zeroed in place (the file keeps its size)."""
    target = folder / "zeroed"
    shutil.copytree(source, target)
    offsets = np.load(target / "offsets.npy")
    with open(target / "images.bin", "r+b") as f:
        f.seek(int(offsets[row]))
        f.write(bytes(int(offsets[row + 1] - offsets[row])))
    return target


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


@pytest.mark.slow
def test_a_zeroed_record_stops_training_naming_set_and_row(jpeg_set, tmp_path, capsys):
    data = zeroed(jpeg_set, tmp_path)
    assert cli("train", CONFIG, "--out", tmp_path / "run", *sets(data, **{"train.epochs": 1})) == 2
    line = one_line(capsys)
    assert str(data) in line and f"row {BAD_ROW} " in line and "data.bad_records=skip" in line


@pytest.mark.slow
def test_bad_records_skip_trains_past_a_zeroed_record(jpeg_set, tmp_path, capsys):
    data = zeroed(jpeg_set, tmp_path)
    args = sets(data, **{"train.epochs": 2, "data.bad_records": "skip"})
    assert cli("train", CONFIG, "--out", tmp_path / "run", *args) == 0
    err = capsys.readouterr().err
    assert err.count(f"row {BAD_ROW} does not decode; skipped") == 1, err  # once, over two epochs
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("bad_records", 0) for r in records if r["kind"] == "train"][-1] == 1


@pytest.mark.slow
def test_eval_of_a_zeroed_record_names_set_and_row(jpeg_set, tmp_path, capsys):
    assert cli("train", CONFIG, "--out", tmp_path / "run", *sets(jpeg_set, **{"train.epochs": 1})) == 0
    data = zeroed(jpeg_set, tmp_path)
    capsys.readouterr()
    assert cli("eval", tmp_path / "run", data, "--batch", "32") == 2
    line = one_line(capsys)
    assert str(data) in line and f"row {BAD_ROW} " in line


def damage_empty_labels(path: Path) -> str:
    (path / "labels.npy").write_bytes(b"")
    return "labels.npy"


def damage_images_header(path: Path) -> str:
    with open(path / "images.npy", "r+b") as f:
        f.seek(10)
        f.write(b"{'descr': '<u1', 'fortran_order': nope")
    return "images.npy"


def damage_num_images(value):
    def damage(path: Path) -> str:
        meta = json.loads((path / "meta.json").read_text())
        meta["num_images"] = value
        (path / "meta.json").write_text(json.dumps(meta))
        return "meta.json"

    return damage


def damage_label_range(path: Path) -> str:
    labels = np.load(path / "labels.npy")
    labels[3] = 10  # 10 classes: 0..9
    np.save(path / "labels.npy", labels)
    return "labels.npy"


def damage_image_shape(path: Path) -> str:
    meta = json.loads((path / "meta.json").read_text())
    meta["image_shape"] = "32x32"
    (path / "meta.json").write_text(json.dumps(meta))
    return "meta.json"


@pytest.mark.parametrize(
    "damage",
    [
        damage_empty_labels,
        damage_images_header,
        damage_num_images("lots"),
        damage_num_images(-1),
        damage_label_range,
        damage_image_shape,
    ],
    ids=["empty-labels", "images-header", "num-images-lots", "num-images-negative", "label-range", "image-shape"],
)
def test_a_damaged_file_is_named_when_the_set_opens(tiny_data, tmp_path, capsys, damage):
    data = tmp_path / "set"
    shutil.copytree(tiny_data, data)
    name = damage(data)
    with pytest.raises(InputError, match=str(data / name)):
        PreparedDataset(data)
    assert cli("info", data) == 2
    line = one_line(capsys)
    assert line.startswith(f"lsvr info: error: {data / name}:"), line


def test_verify_reports_repeated_class_names(tiny_data, tmp_path, capsys):
    data = tmp_path / "set"
    shutil.copytree(tiny_data, data)
    meta = json.loads((data / "meta.json").read_text())
    meta["classes"][1] = meta["classes"][0]
    (data / "meta.json").write_text(json.dumps(meta))
    assert cli("info", data, "--verify") == 2
    err = capsys.readouterr().err
    assert f"{data / 'meta.json'}: classes names {meta['classes'][0]!r} more than once" in err
