"""prepare's memory is bounded whatever the input: a file or tar member over --max-image-bytes
is a too-large reject, never read (a 3 GiB sparse file, a 3 GiB member of a complete tar, a
512 MiB member of a 2.3 MB .tar.gz); a member over 2 GiB is read in chunks (one read() returns
at most about 2 GiB, and the rest looked cut off). Peak memory is the prepare process's own
(VmHWM), under a 2 GiB address-space cap so that reading a member whole fails rather than
taking the machine's memory."""

import gzip
import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from tests.ilsvrc_tars import add, image_bytes
from tests.support import ENV, cli

from lsvr.data import tar_reader
from lsvr.data.tar_reader import MemberReader

CAP = 2 << 30  # the prepare process's address space: a member read whole does not fit
PEAK = 512 << 20  # what prepare may hold of these inputs (it holds ~50 MB of its own)
ARGS = ("--size", "32", "--no-progress", "--workers", "2")
RUN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from lsvr.cli import main
rc = main(sys.argv[1:])
# VmHWM, this process's own peak: ru_maxrss carries the parent's from before the exec
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print("peak", int(hwm.split()[1]) * 1024)
sys.exit(rc)
"""


def prepare_capped(*args) -> tuple[int, int, str]:
    """`lsvr prepare ARGS` in a process of its own under the address-space cap: (exit status,
    its peak resident bytes, stderr)."""
    done = subprocess.run([sys.executable, "-c", RUN.format(cap=CAP), "prepare", *map(str, args), *ARGS],
                          capture_output=True, text=True, env=ENV, timeout=300)  # fmt: skip
    peak = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("peak ")]
    return done.returncode, peak[0] if peak else -1, done.stderr


def rejects(out) -> dict[str, tuple[str, str]]:
    lines = (out / "rejects.tsv").read_text().splitlines()[1:]
    return {path: (kind, reason) for path, kind, reason in (line.split("\t") for line in lines)}


def good_images(rng) -> dict[str, bytes]:
    return {f"{c}/{k}.jpg": image_bytes(rng, 0) for c in ("cat", "dog") for k in range(2)}


def sparse_tar(path, huge: str, size: int, files: dict[str, bytes]) -> None:
    """A complete tar: files, then `huge` of size bytes of zeros left as a hole in the file."""
    with open(path, "wb") as f:
        with tarfile.open(fileobj=f, mode="w") as tar:
            for name, data in files.items():
                add(tar, name, data)
            offset = tar.offset
        info = tarfile.TarInfo(huge)
        info.size = size
        f.seek(offset)
        f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        end = f.tell() + -(-size // 512) * 512
        f.truncate(end + 1024)  # the data and the two end-of-archive blocks: zeros, unwritten


@pytest.mark.slow
def test_a_3_gib_file_in_a_class_folder_is_too_large_and_never_read(tmp_path):
    for name, data in good_images(np.random.default_rng(0)).items():
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(data)
    with open(tmp_path / "src" / "cat" / "big.jpg", "wb") as f:
        f.truncate(3 << 30)  # sparse: nothing written
    rc, peak, err = prepare_capped(tmp_path / "src", tmp_path / "out")
    assert rc == 0, err
    kind, reason = rejects(tmp_path / "out")["cat/big.jpg"]
    assert kind == "too-large" and f"{3 << 30} bytes" in reason and "--max-image-bytes" in reason
    assert 0 < peak < PEAK, peak


@pytest.mark.slow
def test_a_3_gib_member_of_a_complete_tar_is_too_large_not_truncated(tmp_path):
    sparse_tar(tmp_path / "set.tar", "cat/huge.jpg", 3 << 30, good_images(np.random.default_rng(1)))
    rc, peak, err = prepare_capped(tmp_path / "set.tar", tmp_path / "out")
    assert rc == 0, err  # a complete tar: nothing is cut
    assert rejects(tmp_path / "out")["set.tar:cat/huge.jpg"][0] == "too-large"
    assert 0 < peak < PEAK, peak


@pytest.mark.slow
def test_a_512_mib_member_of_a_small_tar_gz_is_never_read_nor_kept_for_the_next(tmp_path):
    """The gzip stream is read forward: a thread asking for the image after the huge member
    passes it, and once kept it (KEPT_BYTES) for the thread behind."""
    path = tmp_path / "set.tar.gz"
    zeros = gzip.compress(bytes(16 << 20), compresslevel=1)  # gzip members concatenate into one stream
    with open(path, "wb") as f:
        head = io.BytesIO()
        info = tarfile.TarInfo("cat/huge.jpg")
        info.size = 512 << 20
        head.write(info.tobuf())
        f.write(gzip.compress(head.getvalue()))
        for _ in range(32):
            f.write(zeros)
        f.write(gzip.compress(tar_tail(good_images(np.random.default_rng(2)))))
    assert path.stat().st_size < 4 << 20
    rc, peak, err = prepare_capped(path, tmp_path / "out")
    assert rc == 0, err
    assert rejects(tmp_path / "out")["set.tar.gz:cat/huge.jpg"][0] == "too-large"
    assert 0 < peak < PEAK, peak


def tar_tail(files: dict[str, bytes]) -> bytes:
    """Tar members and the end blocks, to follow members already written."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            add(tar, name, data)
    return buffer.getvalue()


def test_the_byte_limit_is_a_flag_and_a_member_over_it_is_too_large(tmp_path):
    files = good_images(np.random.default_rng(3))
    sizes = sorted(len(data) for data in files.values())
    with tarfile.open(tmp_path / "set.tar", "w") as tar:
        for name, data in files.items():
            add(tar, name, data)
    out = tmp_path / "out"
    assert cli("prepare", tmp_path / "set.tar", out, *ARGS, "--max-image-bytes", sizes[-1] - 1) == 0
    assert [kind for kind, _ in rejects(out).values()] == ["too-large"]


def test_a_member_is_read_in_chunks_when_one_read_returns_less(tmp_path, monkeypatch):
    """Linux returns at most 0x7ffff000 bytes per read: a 3 GiB member came back short and was
    called truncated. Here every read returns at most 1000 bytes."""
    data = bytes(range(256)) * 40
    (tmp_path / "a.tar").write_bytes(tar_tail({"cat/a.jpg": data}))
    real = tar_reader.os.pread
    monkeypatch.setattr(tar_reader.os, "pread", lambda fd, n, at: real(fd, min(n, 1000), at))
    monkeypatch.setattr(tar_reader, "READ_CHUNK", 4096, raising=False)
    reader = MemberReader([tmp_path / "a.tar"], [False], [(np.array([512]), np.array([len(data)]))])
    assert reader.read(0, 512, len(data)) == data


@pytest.mark.slow
def test_webdataset_labels_keep_their_label_alone_from_the_index_pass(tmp_path):
    """6,000 .json labels of 64 KB (a label and padding) in a 1.2 MB .tar.gz: kept whole from
    the index pass they took 384 MB; kept as their label, a few bytes each."""
    rng = np.random.default_rng(4)
    label = json.dumps({"label": 1, "pad": "0" * 63_900}).encode()
    with tarfile.open(tmp_path / "s.tar.gz", "w:gz", compresslevel=1) as tar:
        add(tar, "a.jpg", image_bytes(rng, 0))
        add(tar, "a.cls", b"0")
        for k in range(6000):
            add(tar, f"{k:06d}.json", label)
    rc, peak, err = prepare_capped(tmp_path / "s.tar.gz", tmp_path / "out")
    assert rc == 0, err
    assert set(kind for kind, _ in rejects(tmp_path / "out").values()) == {"no-image"}
    assert 0 < peak < 200 << 20, peak
