"""An ILSVRC-style train/ tree holding every kind of bad file real datasets contain."""

import io
import os
import zlib

import numpy as np
import pytest
from PIL import Image
from tests.support import cli

from lsvr.data.dataset import PreparedDataset


def jpeg_bytes(pixels: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, mode="CMYK") if pixels.shape[-1] == 4 else Image.fromarray(pixels)
    image.save(buffer, format="JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def jpeg_bomb() -> bytes:
    """A valid small JPEG whose frame header declares 40000 x 40000 pixels."""
    data = bytearray(jpeg_bytes(np.zeros((8, 8, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (40000).to_bytes(2, "big") * 2
    return bytes(data)


def png_bomb() -> bytes:
    """A PNG whose IHDR declares 30000 x 30000 pixels (CRC fixed, so only the size is wrong)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = (30000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def bad_tree(tmp_path):
    """train/<wnid>/ with good photos and every bad kind; returns (root, accepted, rejected)."""
    root = tmp_path / "train"
    a, b = root / "n01440764", root / "n01443537"
    a.mkdir(parents=True)
    b.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        (a / f"n01440764_{i}.JPEG").write_bytes(jpeg_bytes(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)))
        (b / f"n01443537_{i}.JPEG").write_bytes(jpeg_bytes(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)))
    top_bright = np.zeros((30, 60, 3), np.uint8)
    top_bright[:15] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 on display
    accepted = {
        "n01440764/cmyk.JPEG": jpeg_bytes(np.full((40, 40, 4), 60, np.uint8)),
        "n01440764/png_named.JPEG": png_bytes(Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))),
        "n01440764/grey.png": png_bytes(Image.fromarray(np.full((20, 30), 128, np.uint8))),
        "n01440764/rgba.png": png_bytes(Image.fromarray(np.full((20, 30, 4), 200, np.uint8))),
        "n01443537/palette.png": png_bytes(Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).convert("P")),
        "n01443537/deep16.png": png_bytes(Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))),
        "n01443537/exif_rotated.JPEG": jpeg_bytes(top_bright, exif=exif),
    }
    good = (a / "n01440764_0.JPEG").read_bytes()
    rejected = {
        "n01440764/truncated.JPEG": ("bad-jpeg", good[: len(good) // 2]),
        "n01440764/empty.JPEG": ("empty", b""),
        "n01440764/noise.JPEG": ("not-an-image", os.urandom(3000)),
        "n01443537/bomb.JPEG": ("too-large", jpeg_bomb()),
        "n01443537/bomb.png": ("too-large", png_bomb()),
    }
    for name, data in accepted.items():
        (root / name).write_bytes(data)
    for name, (_, data) in rejected.items():
        (root / name).write_bytes(data)
    os.symlink(root / "gone.JPEG", a / "dangling.JPEG")  # unreadable (root reads any mode: no chmod 000)
    os.symlink("loop.JPEG", b / "loop.JPEG")  # a symlink loop
    (b / "folder.JPEG").mkdir()
    with open(os.fsencode(a) + b"/caf\xe9.JPEG", "wb") as f:  # a non-UTF-8 name: decodable, kept
        f.write(good)
    with open(os.fsencode(b) + b"/bad\xff.JPEG", "wb") as f:  # a non-UTF-8 name, and a bad file
        f.write(b"\xff\xd8 not really")
    rejected["n01440764/dangling.JPEG"] = ("unreadable", None)
    rejected["n01443537/loop.JPEG"] = ("unreadable", None)
    rejected["n01443537/folder.JPEG"] = ("directory", None)
    rejected[os.fsdecode(b"n01443537/bad\xff.JPEG")] = ("bad-jpeg", None)
    accepted[os.fsdecode(b"n01440764/caf\xe9.JPEG")] = None
    return root, accepted, rejected


def test_every_bad_kind_is_converted_or_rejected_never_dropped(bad_tree, tmp_path, capsys):
    root, accepted, rejected = bad_tree
    out = tmp_path / "out"
    assert cli("prepare", root, out, "--size", "32", "--no-progress") == 0
    ds = PreparedDataset(out)
    assert ds.classes == ["n01440764", "n01443537"]
    assert len(ds) == 8 + len(accepted) and ds.meta["num_rejected"] == len(rejected)
    with open(out / "rejects.tsv", encoding="utf-8", errors="surrogateescape") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    assert {path: kind for path, kind, _ in rows} == {name: kind for name, (kind, _) in rejected.items()}
    reasons = {path: reason for path, _, reason in rows}
    assert "40000x40000" in reasons["n01443537/bomb.JPEG"] and "symbolic links" in reasons["n01443537/loop.JPEG"]
    assert b"bad\xff.JPEG" in (out / "rejects.tsv").read_bytes()  # the name's own bytes
    summary = capsys.readouterr().out
    kinds = "2 bad-jpeg, 1 directory, 1 empty, 1 not-an-image, 2 too-large, 2 unreadable"
    assert f"{len(rejected)} rejected: {kinds}" in summary
    assert ds.meta["rejected_by_kind"]["unreadable"] == 2
    assert cli("info", out, "--verify") == 0
    # EXIF orientation is not applied (the ImageNet tools' policy): the stored top half is the file's top half
    # kept images of class 1 in path order: deep16.png, exif_rotated.JPEG, n01443537_0..3, palette.png
    pixels = ds.read(np.flatnonzero(ds.labels == 1)[1:2])[0].astype(int)
    assert pixels[:12].mean() > 200 and pixels[-12:].mean() < 50
    deep = ds.read(np.flatnonzero(ds.labels == 1)[:1])[0]  # 16-bit: scaled, not clipped to white
    assert 0 < deep.mean() < 255 and deep.shape == (32, 32, 3)


def test_max_rejects_aborts_with_exit_2(bad_tree, tmp_path, capsys):
    root, _, rejected = bad_tree
    out = tmp_path / "out"
    assert cli("prepare", root, out, "--size", "32", "--max-rejects", "0.1", "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{len(rejected)} of" in err and "--max-rejects 0.1" in err
    assert not out.exists()
    assert cli("prepare", root, out, "--size", "32", "--max-rejects", "0.5", "--no-progress") == 0


def test_a_file_without_read_permission_is_rejected_as_unreadable(tmp_path, monkeypatch):
    from pathlib import Path

    from lsvr.data.image import DecodeError, decode_file

    path = tmp_path / "secret.JPEG"
    path.write_bytes(jpeg_bytes(np.zeros((8, 8, 3), np.uint8)))
    real = os.open

    def refusing_open(name, *args, **kwargs):  # root reads any file whatever its mode: simulate the refusal
        if Path(name) == path:
            raise PermissionError(13, "Permission denied")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(DecodeError) as caught:
        decode_file(path)
    assert caught.value.kind == "unreadable" and "Permission denied" in str(caught.value)


def test_two_identical_prepares_write_identical_rejects(bad_tree, tmp_path):
    root, _, rejected = bad_tree
    for out in ("one", "two"):
        assert cli("prepare", root, tmp_path / out, "--size", "32", "--no-progress") == 0
    first = (tmp_path / "one" / "rejects.tsv").read_bytes()
    assert first == (tmp_path / "two" / "rejects.tsv").read_bytes()
    assert b" object at 0x" not in first and first.count(b"\n") == 1 + len(rejected)
    assert b"n01440764/noise.JPEG\tnot-an-image\tnot a decodable image: no image format recognised\n" in first
