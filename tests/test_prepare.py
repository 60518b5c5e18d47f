import numpy as np
import pytest
from PIL import Image
from tests.support import cli, write_idx, write_tree

from lsvr.data.dataset import PreparedDataset
from lsvr.data.prepare import resize


def test_idx_round_trip_keeps_pixels_labels_and_order(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 50).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    assert cli("prepare", tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "a", "--size", "28", "--no-progress") == 0
    ds = PreparedDataset(tmp_path / "a")
    assert ds.shape == (28, 28, 1) and len(ds) == 50
    assert np.array_equal(ds.read(np.arange(50))[:, :, :, 0], images)
    assert np.array_equal(ds.labels, labels)
    assert np.allclose(ds.mean_image[:, :, 0], images.mean(axis=0), atol=1e-4)
    assert ds.verify() == []
    # the same command twice gives the same data files, whatever the worker count
    cli("prepare", tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "b", "--size", "28", "--workers", "1",
        "--no-progress")  # fmt: skip
    for name in ("images.npy", "labels.npy", "mean.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_resize_policies():
    tall = np.zeros((40, 20, 1), np.uint8)
    tall[:, 8:12] = 255
    assert resize(tall, 16, "squash").shape == (16, 16, 1)
    centre = resize(tall, 16, "center")  # 20 -> 16 wide, centre band kept
    assert centre.shape == (16, 16, 1) and centre[:, 7].min() > 200
    padded = resize(np.full((28, 28, 1), 9, np.uint8), 32, "pad")
    assert padded[2:30, 2:30].min() == 9 and padded[:2].max() == 0


@pytest.mark.parametrize("case", ["missing", "empty", "all_bad"])
def test_unusable_sources_exit_2_withone_line(tmp_path, capsys, case):
    src = tmp_path / "src"
    if case != "missing":
        (src / "a").mkdir(parents=True)
    if case == "all_bad":
        (src / "a" / "x.jpg").write_bytes(b"not an image")
    assert cli("prepare", src, tmp_path / "out", "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(src) in err
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    src = write_tree(tmp_path / "src", {"a": 2, "b": 2})
    assert cli("prepare", src, tmp_path / "out", "--size", "16", "--no-progress") == 0
    assert cli("prepare", src, tmp_path / "out", "--size", "16", "--no-progress") == 0  # the same command: done
    assert "already prepared" in capsys.readouterr().err
    assert cli("prepare", src, tmp_path / "out", "--size", "20", "--no-progress") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli("prepare", src, tmp_path / "out", "--size", "16", "--overwrite", "--no-progress") == 0


def test_jpeg_encoding_round_trip(tmp_path):
    src = write_tree(tmp_path / "src", {"a": 3, "b": 3})
    cli("prepare", src, tmp_path / "raw", "--size", "32", "--no-progress")
    cli("prepare", src, tmp_path / "jpg", "--size", "32", "--encoding", "jpeg", "--quality", "95", "--no-progress")
    raw, jpg = PreparedDataset(tmp_path / "raw"), PreparedDataset(tmp_path / "jpg")
    assert jpg.encoding == "jpeg" and np.array_equal(raw.labels, jpg.labels)
    diff = np.abs(raw.read(np.arange(6)).astype(int) - jpg.read(np.arange(6)).astype(int))
    assert diff.mean() < 8
    assert cli("info", tmp_path / "jpg", "--verify") == 0


def test_verify_names_a_damaged_file(tmp_path, capsys):
    src = write_tree(tmp_path / "src", {"a": 2, "b": 2})
    cli("prepare", src, tmp_path / "out", "--size", "16", "--no-progress")
    images = tmp_path / "out" / "images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF
    images.write_bytes(bytes(data))
    assert cli("info", tmp_path / "out", "--verify") == 2
    assert f"{images}: checksum mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_mean_is_exact_over_shards_and_threads(tmp_path, workers):
    rng = np.random.default_rng(2)
    images = rng.integers(200, 256, (1100, 12, 12), dtype=np.uint8)  # > 2 shards; > 257 per thread
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 1100))
    out = tmp_path / "out"
    assert cli("prepare", tmp_path, out, "--size", "12", "--workers", workers, "--no-progress") == 0
    ds = PreparedDataset(out)
    expected = images.astype(np.int64).sum(axis=0) / len(images)
    assert np.array_equal(ds.mean_image[:, :, 0], expected.astype(np.float32))
    assert abs(ds.channel_std[0] - images.std()) < 0.02 * images.std()


def test_a_disk_too_small_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import shutil

    from lsvr.data import prepare as prepare_module

    src = write_tree(tmp_path / "src", {"a": 3, "b": 3})
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(prepare_module.shutil, "disk_usage", lambda _: usage._replace(free=512 << 10))
    for encoding in ("raw", "jpeg"):
        assert cli("prepare", src, tmp_path / encoding, "--encoding", encoding, "--no-progress") == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / encoding}: the dataset needs about" in err and "the disk has 0.5 MiB free" in err
        assert not (tmp_path / encoding).exists() and not (tmp_path / f"{encoding}.partial").exists()


def test_folder_tree_gives_the_same_bytes_whatever_the_worker_count(tmp_path):
    src = write_tree(tmp_path / "src", {"a": 30, "b": 30}, size=(70, 50))
    for workers in ("1", "2", "3"):
        assert cli("prepare", src, tmp_path / workers, "--size", "40", "--encoding", "jpeg", "--workers", workers,
                   "--no-progress") == 0  # fmt: skip
    for name in ("images.bin", "offsets.npy", "labels.npy", "mean.npy", "rejects.tsv"):
        assert (
            (tmp_path / "1" / name).read_bytes()
            == (tmp_path / "2" / name).read_bytes()
            == (tmp_path / "3" / name).read_bytes()
        )


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_a_truncated_dataset_is_refused_when_opened(tmp_path, capsys, encoding):
    src = write_tree(tmp_path / "src", {"a": 3, "b": 3})
    cli("prepare", src, tmp_path / "out", "--size", "16", "--encoding", encoding, "--no-progress")
    data = tmp_path / "out" / ("images.npy" if encoding == "raw" else "images.bin")
    data.write_bytes(data.read_bytes()[:-100])
    assert cli("info", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(data) in err and len(err.strip().splitlines()) == 1


def test_large_jpegs_are_decoded_at_reduced_scale(tmp_path):
    from lsvr.data.image import decode_file, reduced_scale

    assert reduced_scale(1200, 900, 64) == 8 and reduced_scale(500, 375, 256) == 1
    assert reduced_scale(1200, 900, 256) == 2 and reduced_scale(1200, 900, 0) == 1
    yy, xx = np.mgrid[0:900, 0:1200]
    smooth = np.stack([xx * 255 // 1200, yy * 255 // 900, (xx + yy) * 255 // 2100], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    assert decode_file(tmp_path / "big.jpg", 64).shape == (113, 150, 3)  # 1/8 scale, shorter side >= 64
    reduced = resize(decode_file(tmp_path / "big.jpg", 64), 64, "squash").astype(int)
    full = resize(decode_file(tmp_path / "big.jpg"), 64, "squash").astype(int)
    assert np.abs(reduced - full).mean() < 2
