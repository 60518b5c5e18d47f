"""`lsvr prepare --resize short --size S [--max-size M]`: aspect kept, shorter side S (upscaled
when smaller, as torchvision's Resize), longer side capped at M; JPEG images of varying shape
with shapes.npy (format version 2), no mean image; the dataset's checks at open and verify."""

import json

import numpy as np
import pytest
from PIL import Image
from tests.support import cli, one_line

from lsvr.data import build, prepare
from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.preprocess import Preprocess

# (width, height) of the source photos: wide, tall, smaller than S (upscaled), a 1-pixel strip,
# a very wide one, square; JPEG and PNG alternate
SOURCES = [(60, 45), (45, 60), (100, 30), (20, 20), (1, 50), (300, 2), (33, 77), (64, 64)]
DATA_FILES = ("images.bin", "offsets.npy", "labels.npy", "shapes.npy", "rejects.tsv")


def photo_tree(root, sources=SOURCES):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i, (w, h) in enumerate(sources):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[:, :, "ab".index(c)] //= 2
            Image.fromarray(pixels).save(root / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return photo_tree(tmp_path_factory.mktemp("short") / "src")


def prepared(tree, out, *args):
    assert cli("prepare", tree, out, "--resize", "short", "--no-progress", *args) == 0
    return PreparedDataset(out)


def test_shorter_side_is_the_size_and_the_aspect_kept(tree, tmp_path):
    ds = prepared(tree, tmp_path / "out", "--size", "32")
    sizes = ds.sizes(np.arange(len(ds)))
    assert ds.shape == (0, 0, 3) and ds.mean_image is None and len(ds) == 2 * len(SOURCES)
    for (w, h), (height, width) in zip(SOURCES * 2, sizes.tolist(), strict=True):
        assert min(height, width) == 32, (w, h, height, width)  # 20 x 20 upscaled, as Resize(32) does
        assert (height >= width) == (h >= w)
        long, short = max(w, h), min(w, h)
        assert abs(max(height, width) - 32 * long / short) < 1  # truncated, as torchvision's arithmetic
    for i in range(len(ds)):
        assert ds.image(i).shape == (*sizes[i], 3)
        assert ds.image(i, scale=2).shape == (*(-(-sizes[i] // 2)), 3)  # libjpeg-turbo's reduced decode
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["format_version"] == 2 and meta["image_shape"] == [0, 0, 3] and meta["encoding"] == "jpeg"
    assert (meta["resize"], meta["size"], meta["max_size"]) == ("short", 32, None)
    assert "shapes.npy" in meta["checksums"] and not (tmp_path / "out" / "mean.npy").exists()
    # the channel mean is over every stored pixel: the decoded JPEGs agree within their loss
    pixels = np.concatenate([ds.image(i).reshape(-1, 3) for i in range(len(ds))]).astype(np.float64)
    assert np.allclose(meta["channel_mean"], pixels.mean(axis=0), atol=1.5)
    assert np.allclose(meta["channel_std"], pixels.std(axis=0), atol=3.0)  # 1 pixel in 16
    pre = Preprocess.from_dataset(ds)
    assert (pre.resize, pre.size, pre.eval_size, pre.mean_image) == ("short", 32, 32, None)
    assert ds.describe()["sizes"] == {"shorter_side": 32, "max_size": None, "heights": [32, 1600],
                                      "widths": [32, 4800]}  # fmt: skip


def test_max_size_caps_the_longer_side(tree, tmp_path):
    ds = prepared(tree, tmp_path / "out", "--size", "32", "--max-size", "48")
    for (w, h), (height, width) in zip(SOURCES * 2, ds.sizes(np.arange(len(ds))).tolist(), strict=True):
        assert max(height, width) <= 48 and min(height, width) <= 32
        if max(w, h) * 32 / min(w, h) < 49:  # no cap needed: the shorter side is S
            assert min(height, width) == 32
        else:
            assert max(height, width) == 48 and (height >= width) == (h >= w)
    assert ds.sizes(np.array([4, 5])).tolist() == [[48, 1], [1, 48]]  # 1 x 50 and 300 x 2: one pixel kept


def test_a_strip_too_long_for_jpeg_is_rejected_not_a_crash(tmp_path):
    # 3000 x 1 -> 96000 x 32: over JPEG's 65535 a side; 60000 x 1 at 256 would be 15 million
    # pixels long (11 GB): refused before it is resized
    src = photo_tree(tmp_path / "src", sources=[(3000, 1), (40, 40), (60000, 1)])
    ds = prepared(src, tmp_path / "out", "--size", "32")
    assert len(ds) == 2
    rejects = (tmp_path / "out" / "rejects.tsv").read_text().splitlines()[1:]
    assert len(rejects) == 4 and all("too-large" in r and "--max-size" in r for r in rejects)
    assert cli("prepare", src, tmp_path / "big", "--resize", "short", "--size", "256", "--no-progress") == 0
    capped = prepared(src, tmp_path / "capped", "--size", "32", "--max-size", "64")
    assert len(capped) == 6 and capped.sizes(np.array([0, 2])).tolist() == [[1, 64], [1, 64]]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--resize", "short", "--encoding", "raw"], "only --encoding jpeg"),
        (["--max-size", "64"], "--max-size caps the longer side of --resize short"),
        (["--resize", "short", "--size", "32", "--max-size", "31"], "--max-size 31 is below --size 32"),
    ],
)
def test_bad_flags_exit_2_in_one_line(tree, tmp_path, capsys, args, needle):
    capsys.readouterr()
    assert cli("prepare", tree, tmp_path / "out", "--no-progress", *args) == 2
    one_line(capsys, needle)
    assert not (tmp_path / "out").exists()


def test_a_stopped_prepare_continues_to_the_same_bytes(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "SHARD", 3)  # 6 shards of the 16 photos
    whole = prepared(tree, tmp_path / "whole", "--size", "24", "--max-size", "40").path
    commit, calls = build.Build.commit, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(build.Build, "commit", failing)
    args = ["prepare", tree, tmp_path / "out", "--resize", "short", "--size", "24", "--max-size", "40", "--no-progress"]
    assert cli(*args, "--workers", "1") == 1  # stopped: two shards kept in OUT.partial
    state = np.load(tmp_path / "out.partial" / "state.npz")
    assert int(state["counts"][0]) == 2 and state["pixel_sum"].shape == (1, 1, 3)
    assert cli(*args, "--workers", "2") == 0
    for name in DATA_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (whole / name).read_bytes(), name
    first, second = ({k: v for k, v in json.loads((f / "meta.json").read_text()).items() if k != "created"}
                     for f in (whole, tmp_path / "out"))  # fmt: skip
    assert first == second


def test_verify_catches_an_altered_shapes_file(tree, tmp_path):
    ds = prepared(tree, tmp_path / "out", "--size", "32")
    assert ds.verify() == []
    shapes = np.load(tmp_path / "out" / "shapes.npy")
    shapes[0] = shapes[0][::-1]  # 32 x 42 said to be 42 x 32: still the policy, not the file
    np.save(tmp_path / "out" / "shapes.npy", shapes)
    problems = PreparedDataset(tmp_path / "out").verify()
    assert any("shapes.npy: row 0 says 42 x 32, its JPEG is 32 x 42" in p for p in problems), problems
    assert any("shapes.npy: checksum mismatch" in p for p in problems), problems


def altered(folder, name, value):
    if name == "meta.json":
        meta = json.loads((folder / name).read_text())
        meta.update(value)
        (folder / name).write_text(json.dumps(meta))
    elif value is None:
        (folder / name).unlink()
    else:
        np.save(folder / name, value)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("shapes.npy", None, "shapes.npy: missing"),
        ("shapes.npy", np.full((3, 2), 32, np.int32), "expected (16, 2) whole numbers"),
        ("shapes.npy", np.full((16, 2), 0, np.int32), "row 0 is 0 x 0, not shorter side 32"),
        ("shapes.npy", np.full((16, 2), 33, np.int32), "row 0 is 33 x 33, not shorter side 32"),
        ("meta.json", {"format_version": 1}, "format_version must be 2"),
        ("meta.json", {"format_version": 3}, "format version 3, lsvr reads 1 and 2"),
        ("meta.json", {"resize": "squash"}, "resize must be short"),
        ("meta.json", {"max_size": 20}, "max_size must be null or a whole number >= size"),
        ("meta.json", {"image_shape": [0, 32, 3]}, "image_shape must be"),
    ],
)
def test_the_checks_at_open_name_the_file_and_the_reason(tree, tmp_path, name, value, needle):
    prepared(tree, tmp_path / "out", "--size", "32")
    altered(tmp_path / "out", name, value)
    with pytest.raises(InputError, match=r"^[^\n]*$") as caught:
        PreparedDataset(tmp_path / "out")
    assert needle in str(caught.value)


def test_fixed_shape_readers_refuse_a_set_of_varying_shapes(tree, tmp_path):
    ds = prepared(tree, tmp_path / "out", "--size", "32")
    out = np.empty((2, 8, 8, 3), np.uint8)
    for read in (lambda: ds.read(np.arange(2)), lambda: ds.read_crops(np.arange(2), [0, 0], [0, 0], 8, out)):
        with pytest.raises(InputError, match=r"varying shape.*image\(i\).*sizes\(rows\)"):
            read()


def test_info_shows_the_sizes_policy(tree, tmp_path, capsys):
    prepared(tree, tmp_path / "out", "--size", "32", "--max-size", "48")
    capsys.readouterr()
    assert cli("info", tmp_path / "out", "--verify", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sizes"]["shorter_side"] == 32 and info["sizes"]["max_size"] == 48 and info["verified"]
