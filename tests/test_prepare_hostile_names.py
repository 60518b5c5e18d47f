"""Hostile names and labels in prepare's sources: tar members with absolute or '..' names,
devices and FIFOs (in a tar and in a class folder) are reject lines and the prepare goes on;
WebDataset labels far beyond the samples are bad-label rejects, only ASCII digits are class
indices; a brace pattern is counted before it is expanded, and one naming a shard twice is
refused. The unbounded cases run in a process of their own under an address-space cap."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from tests.ilsvrc_tars import add, image_bytes
from tests.support import ENV, cli, one_line

from lsvr.data.dataset import PreparedDataset

ARGS = ("--size", "32", "--no-progress", "--workers", "2")
CAP = 2 << 30  # address space of the capped runs: a class list or name list of billions does not fit
RUN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from lsvr.cli import main
sys.exit(main(sys.argv[1:]))
"""


def prepare_capped(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN.format(cap=CAP), "prepare", *map(str, args), *ARGS],
                          capture_output=True, text=True, env=ENV, timeout=timeout)  # fmt: skip


def rejects(out) -> dict[str, str]:
    lines = (out / "rejects.tsv").read_text().splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines}


def special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 5  # 1, 5: /dev/zero, which never ends
    return info


def test_unsafe_names_devices_and_fifos_in_a_tar_are_rejects_and_the_prepare_goes_on(tmp_path, capsys):
    rng = np.random.default_rng(0)
    with tarfile.open(tmp_path / "set.tar", "w") as tar:
        for name in ("cat/1.jpg", "dog/1.jpg", "/abs/n01/e.JPEG", "../../escape.jpg", "cat/../../escape2.jpg"):
            add(tar, name, image_bytes(rng, 0))
        tar.addfile(special("cat/dev.jpg", tarfile.CHRTYPE))
        tar.addfile(special("dog/fifo.jpg", tarfile.FIFOTYPE))
    assert cli("prepare", tmp_path / "set.tar", tmp_path / "out", *ARGS) == 0
    assert rejects(tmp_path / "out") == {
        "set.tar:/abs/n01/e.JPEG": "unsafe-name",
        "set.tar:../../escape.jpg": "unsafe-name",
        "set.tar:cat/../../escape2.jpg": "unsafe-name",
        "set.tar:cat/dev.jpg": "not-a-file",
        "set.tar:dog/fifo.jpg": "not-a-file",
    }
    assert PreparedDataset(tmp_path / "out").classes == ["cat", "dog"]
    assert "2 not-a-file, 3 unsafe-name" in capsys.readouterr().out


@pytest.mark.slow
def test_a_fifo_or_device_named_jpg_in_a_class_folder_is_a_reject_not_a_hang(tmp_path):
    """Reading a FIFO waits for a writer forever; a device like /dev/zero never ends."""
    rng = np.random.default_rng(1)
    for name in ("cat/1.jpg", "dog/1.jpg"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(image_bytes(rng, 0))
    os.mkfifo(tmp_path / "src" / "cat" / "fifo.jpg")
    expected = {"cat/fifo.jpg": "not-a-file"}
    try:
        os.mknod(tmp_path / "src" / "dog" / "zero.jpg", 0o600 | 0o020000, os.makedev(1, 5))
        expected["dog/zero.jpg"] = "not-a-file"
    except PermissionError:  # no CAP_MKNOD here: the FIFO alone
        pass
    done = prepare_capped(tmp_path / "src", tmp_path / "out", timeout=90)  # a hang fails (a run takes ~2 s)
    assert done.returncode == 0, done.stderr
    assert rejects(tmp_path / "out") == expected


def shard(path, labels: list[tuple[str, bytes]]) -> None:
    """A WebDataset shard: one sample per (label extension, label bytes)."""
    rng = np.random.default_rng(2)
    with tarfile.open(path, "w") as tar:
        for k, (ext, label) in enumerate(labels):
            add(tar, f"{k:06d}.jpg", image_bytes(rng, 0))
            add(tar, f"{k:06d}.{ext}", label)


def test_a_webdataset_label_far_beyond_the_samples_is_a_bad_label_not_a_class_list(tmp_path):
    """Before: 50,001 classes from 5 samples, and '\u0663' (an Arabic-Indic 3) as class 3. Labels
    that would take gigabytes before run under the cap, below."""
    shard(tmp_path / "s.tar", [("cls", b"0"), ("cls", b"2"), ("cls", b"50000"), ("cls", "\u0663".encode()),
                               ("cls", b"1")])  # fmt: skip
    assert cli("prepare", tmp_path / "s.tar", tmp_path / "out", *ARGS) == 0
    assert rejects(tmp_path / "out") == {"s.tar:000002.jpg": "bad-label", "s.tar:000003.jpg": "bad-label"}
    ds = PreparedDataset(tmp_path / "out")
    assert ds.classes == ["0", "1", "2"] and ds.labels.tolist() == [0, 2, 1]
    reason = (tmp_path / "out" / "rejects.tsv").read_text().splitlines()[1].split("\t")[2]
    assert "class index 50000" in reason and "--classes" in reason
    shard(tmp_path / "sparse.tar", [("cls", b"0"), ("cls", b"50000")])  # sparse labels, with their class list
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"c{k}\n" for k in range(50001)))
    assert cli("prepare", tmp_path / "sparse.tar", tmp_path / "given", *ARGS, "--classes", names) == 0
    assert PreparedDataset(tmp_path / "given").labels.tolist() == [0, 50000]


@pytest.mark.slow
def test_a_label_of_99999999999_is_one_reject_under_a_memory_cap(tmp_path):
    """Before: a class list of 10**11 names, MemoryError at 7.6 GB (here: at the cap)."""
    shard(tmp_path / "s.tar", [("cls", b"0"), ("cls", b"99999999999"), ("json", b'{"label": 300000000}'),
                               ("cls", b"1")])  # fmt: skip
    done = prepare_capped(tmp_path / "s.tar", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert rejects(tmp_path / "out") == {"s.tar:000001.jpg": "bad-label", "s.tar:000002.jpg": "bad-label"}
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["classes"] == ["0", "1"]


@pytest.mark.slow
def test_a_wide_brace_pattern_is_counted_not_expanded(tmp_path):
    """Before: MemoryError after 16 s, building a billion names."""
    done = prepare_capped(str(tmp_path / "x-{0..999999999}.tar"), tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "1,000,000,000 shards" in done.stderr and "x-{0..999999999}.tar" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_brace_pattern_naming_a_shard_twice_is_refused(tmp_path, capsys):
    shard(tmp_path / "x-0.tar", [("cls", b"0"), ("cls", b"1")])
    assert cli("prepare", str(tmp_path / "x-{0,0,0}.tar"), tmp_path / "out", *ARGS) == 2
    one_line(capsys, "x-0.tar", "named twice")
    assert not (tmp_path / "out").exists()
