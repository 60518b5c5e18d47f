"""WebDataset shards (NNNNNN.jpg + NNNNNN.cls), named by a brace pattern or a folder, plain
or gzipped: one item per sample in shard order, a sample without a label a reject."""

import json
import random
import tarfile

import numpy as np
import pytest
from tests.ilsvrc_tars import add, image_bytes
from tests.support import cli, one_line

from lsvr.data.dataset import PreparedDataset
from lsvr.data.tar_source import open_tar_source

ARGS = ("--size", "32", "--encoding", "jpeg", "--no-progress", "--workers", "2")


def write_shards(folder, *, shards=3, per_shard=6, mode="w", ext="tar", label="cls", seed=0) -> list[int]:
    """shards of per_shard samples; sample 4 of shard 1 has no label; returns the labels in order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = []
    for s in range(shards):
        with tarfile.open(folder / f"train-{s:06d}.{ext}", mode) as tar:
            for k in range(per_shard):
                key = f"{s * per_shard + k:06d}"
                value = int(rng.integers(4))
                add(tar, f"{key}.jpg", image_bytes(rng, 0))
                if (s, k) == (1, 4):
                    labels.append(None)
                    continue
                text = json.dumps({"label": value}) if label == "json" else str(value)
                add(tar, f"{key}.{label}", text.encode())
                if label == "cls":  # metadata beside the label, as shards often carry
                    add(tar, f"{key}.json", b'{"caption": "not the label"}')
                labels.append(value)
    return labels


@pytest.mark.parametrize("label", ["cls", "json"])
def test_shards_by_brace_pattern_keep_tar_order_and_reject_a_sample_without_label(tmp_path, label):
    expected = write_shards(tmp_path / "shards", label=label)
    assert cli("prepare", str(tmp_path / "shards" / "train-{000000..000002}.tar"), tmp_path / "out", *ARGS) == 0
    ds = PreparedDataset(tmp_path / "out")
    assert np.array_equal(ds.labels, [v for v in expected if v is not None])
    assert ds.classes == [str(k) for k in range(max(v for v in expected if v is not None) + 1)]
    rejects = (tmp_path / "out" / "rejects.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[:2] for line in rejects] == [["train-000001.tar:000010.jpg", "no-label"]]


def test_gzipped_shards_prepare_to_the_same_bytes_as_plain_ones(tmp_path):
    write_shards(tmp_path / "plain")
    write_shards(tmp_path / "gz", mode="w:gz", ext="tar.gz")
    assert cli("prepare", tmp_path / "plain", tmp_path / "a", *ARGS) == 0
    assert cli("prepare", tmp_path / "gz", tmp_path / "b", *ARGS) == 0
    for name in ("images.bin", "offsets.npy", "labels.npy", "mean.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_gzipped_shard_reads_any_member_in_any_order(tmp_path):
    """Members asked out of order (threads racing, a resumed prepare) come from the forward
    stream's store or a rewind: never wrong bytes."""
    write_shards(tmp_path / "plain", shards=1, per_shard=40)
    write_shards(tmp_path / "gz", shards=1, per_shard=40, mode="w:gz", ext="tar.gz")
    plain, packed = open_tar_source(str(tmp_path / "plain")), open_tar_source(str(tmp_path / "gz"))
    order = list(range(len(plain)))
    random.Random(0).shuffle(order)
    for i in order:
        read = packed.reader.read(int(packed.volume[i]), int(packed.offset[i]), int(packed.size[i]))
        assert read == plain.reader.read(int(plain.volume[i]), int(plain.offset[i]), int(plain.size[i]))


def test_class_names_as_labels_and_the_given_classes(tmp_path, capsys):
    folder = tmp_path / "named"
    folder.mkdir()
    rng = np.random.default_rng(0)
    with tarfile.open(folder / "a.tar", "w") as tar:
        for k, name in enumerate(["dog", "cat", "dog"]):
            add(tar, f"{k:06d}.jpg", image_bytes(rng, 0))
            add(tar, f"{k:06d}.txt", name.encode())
    assert cli("prepare", folder, tmp_path / "out", *ARGS) == 0
    ds = PreparedDataset(tmp_path / "out")
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [1, 0, 1]
    (tmp_path / "classes.txt").write_text("cat\n")
    assert cli("prepare", folder, tmp_path / "out2", *ARGS, "--classes", tmp_path / "classes.txt") == 2
    one_line(capsys, "a.tar:000000.jpg", "'dog' is not among the 1 classes")


def test_source_format_webdataset_with_labels_is_refused(tmp_path, capsys):
    write_shards(tmp_path / "shards", shards=1)
    (tmp_path / "val.txt").write_text("000000.jpg 0\n")
    assert cli("prepare", tmp_path / "shards", tmp_path / "out", "--no-progress", "--source-format", "webdataset",
               "--labels", tmp_path / "val.txt") == 2  # fmt: skip
    one_line(capsys, "carry their labels")
    bad = tmp_path / "bad"
    bad.mkdir()
    with tarfile.open(bad / "s.tar", "w") as tar:
        add(tar, "000000.jpg", image_bytes(np.random.default_rng(0), 0))
        add(tar, "000000.cls", b"seven")
    assert cli("prepare", bad, tmp_path / "out", *ARGS, "--source-format", "webdataset") == 2  # nothing decodable
    one_line(capsys, "none of its 1 items", "000000.cls: not a class index or name")
