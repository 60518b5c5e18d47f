"""A prepared set whose files hold the wrong kind of numbers is refused when it is opened, in one
line naming the file: float labels were truncated to classes, a std of 0 divided every pixel."""

import json
import shutil

import numpy as np
import pytest
from tests.support import cli, one_line

from lsvr.data.dataset import PreparedDataset


def _altered(source, folder, name, change):
    target = folder / "set"
    shutil.copytree(source, target)
    if name == "meta.json":
        meta = json.loads((target / name).read_text())
        meta.update(change)
        (target / name).write_text(json.dumps(meta))  # json writes nan and inf as NaN, Infinity
    else:
        np.save(target / name, change(np.load(target / name)))
    return target


@pytest.mark.parametrize(
    ("name", "change", "says"),
    [("labels.npy", lambda a: a.astype(np.float32), "labels.npy: float32 values, expected whole numbers"),
     ("labels.npy", lambda a: a.astype(np.float32) + 0.5, "labels.npy: float32 values"),
     ("images.npy", lambda a: a.astype(np.float32), "images.npy: float32 values, expected uint8"),
     ("images.npy", lambda a: a.astype(np.int64), "images.npy: int64 values, expected uint8"),
     ("mean.npy", lambda a: a.astype(np.int32), "mean.npy: int32 values, expected floats"),
     ("mean.npy", lambda a: np.where(a > -1, np.nan, a).astype(np.float32), "mean.npy: holds nan or inf"),
     ("meta.json", {"channel_std": [0.0]}, "channel_std must be one finite number > 0 per channel, got [0.0]"),
     ("meta.json", {"channel_std": [-2.0]}, "channel_std must be one finite number > 0 per channel"),
     ("meta.json", {"channel_std": [float("nan")]}, "channel_std must be one finite number > 0 per channel"),
     ("meta.json", {"channel_std": [float("inf")]}, "channel_std must be one finite number > 0 per channel"),
     ("meta.json", {"channel_mean": [float("nan")]}, "channel_mean must be one finite number per channel")],
)  # fmt: skip
def test_a_set_with_numbers_of_the_wrong_kind_is_refused_naming_the_file(tiny_data, tmp_path, capsys, name,
                                                                         change, says):  # fmt: skip
    data = _altered(tiny_data, tmp_path, name, change)
    assert cli("info", data) == 2
    line = one_line(capsys, says)
    assert str(data / name) in line


def test_float_offsets_of_a_jpeg_set_are_refused(tiny_data, tmp_path, capsys):
    jpeg = tmp_path / "jpeg"
    assert cli("prepare", tiny_data.parent, jpeg, "--size", "32", "--encoding", "jpeg", "--no-progress") == 0
    capsys.readouterr()
    data = _altered(jpeg, tmp_path, "offsets.npy", lambda a: a.astype(np.float64))
    assert cli("info", data) == 2
    one_line(capsys, f"{data / 'offsets.npy'}: float64 values, expected whole numbers")


def test_the_set_as_prepared_opens(tiny_data):
    prepared = PreparedDataset(tiny_data)  # what prepare writes passes every check above
    assert prepared.labels.dtype == np.int64 and all(v > 0 for v in prepared.channel_std)
