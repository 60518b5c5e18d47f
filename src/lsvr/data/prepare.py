"""`lsvr prepare`: convert a raw source into a prepared dataset (see docs/DATA_FORMAT.md).

Every item is decoded, resized to size x size and converted to the dataset's channel
count in a thread pool (Pillow, simplejpeg and numpy release the GIL). Items that cannot
become an image go to rejects.tsv with the reason; they never stop the run. The output
is written into OUT.partial and renamed to OUT at the end, so OUT is complete or absent.
The mean is summed in integers, so it does not depend on how the work was split.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image
from tqdm import tqdm

from lsvr import __version__
from lsvr.data.dataset import FORMAT_VERSION, file_sha256
from lsvr.data.sources import DecodeError, IdxSource, Source
from lsvr.errors import InputError

RESIZE_POLICIES = ("squash", "center", "pad")
CHUNK = 1024  # items decoded per round: bounds memory, and the mean's summation order


def resize(pixels: np.ndarray, size: int, policy: str) -> np.ndarray:
    """(H, W, C) -> (size, size, C). squash: ignore aspect (the paper); center: shorter side
    to size, then centre crop; pad: fit inside, centred on black (no upscaling)."""
    h, w, c = pixels.shape
    if policy == "pad" and h <= size and w <= size:
        out = np.zeros((size, size, c), np.uint8)
        top, left = (size - h) // 2, (size - w) // 2
        out[top : top + h, left : left + w] = pixels
        return out
    if (h, w) == (size, size):
        return pixels
    image = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels)
    if policy == "squash":
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    elif policy == "center":
        scale = size / min(h, w)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        image = image.crop((left, top, left + size, top + size))
    else:  # pad, image larger than the canvas: shrink to fit, keep aspect
        scale = size / max(h, w)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
        return resize(np.asarray(image).reshape(image.height, image.width, c), size, policy)
    return np.asarray(image).reshape(size, size, c)


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:  # grey -> RGB by repetition
        return np.repeat(pixels, 3, axis=2)
    # RGB -> grey with ITU-R 601-2 luma, as Pillow's convert("L")
    grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)[:, :, None]


def _tsv_field(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


def prepare(
    source: Source,
    out: Path,
    *,
    size: int,
    resize_policy: str = "squash",
    encoding: str = "raw",
    channels: int | None = None,
    quality: int = 90,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict:
    """Write the prepared dataset of `source` to `out`; returns its meta.json contents."""
    if resize_policy not in RESIZE_POLICIES:
        raise InputError(f"--resize must be one of {', '.join(RESIZE_POLICIES)}")
    if encoding not in ("raw", "jpeg"):
        raise InputError("--encoding must be raw or jpeg")
    if not 8 <= size <= 4096:
        raise InputError(f"--size must be in 8..4096, got {size}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: already exists and is not empty (pass --overwrite to replace it)")
    channels = channels or (1 if isinstance(source, IdxSource) else 3)
    workers = workers or os.cpu_count() or 1
    n = len(source)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    shape = (size, size, channels)
    # Every item gets a row; rejected rows are dropped in the compaction below.
    staged = np.lib.format.open_memmap(partial / "staged.npy", mode="w+", dtype=np.uint8, shape=(n, *shape))
    ok = np.zeros(n, dtype=bool)
    pixel_sum = np.zeros(shape, dtype=np.uint64)
    rejects: list[tuple[str, str]] = []

    def convert(i: int) -> tuple[int, str | None]:
        try:
            staged[i] = to_channels(resize(source.decode(i), size, resize_policy), channels)
            return i, None
        except DecodeError as exc:
            return i, str(exc)

    started = time.time()
    bar = tqdm(total=n, unit="img", desc="prepare", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    with ThreadPoolExecutor(workers) as pool:
        for first in range(0, n, CHUNK):
            for i, reason in pool.map(convert, range(first, min(n, first + CHUNK))):
                if reason is None:
                    ok[i] = True
                else:
                    rejects.append((source.names[i], reason))
            chunk = staged[first : first + CHUNK][ok[first : first + CHUNK]]
            pixel_sum += chunk.sum(axis=0, dtype=np.uint64)
            bar.update(min(CHUNK, n - first))
    bar.close()

    with open(partial / "rejects.tsv", "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("path\treason\n")
        for name, reason in rejects:
            f.write(f"{_tsv_field(name)}\t{_tsv_field(reason)}\n")
    kept = np.flatnonzero(ok)
    if not len(kept):
        shutil.rmtree(partial)
        raise InputError(f"{source.root}: none of its {n} items could be decoded (first: {rejects[0][1]})")

    labels = source.labels[kept].astype(np.int16 if len(source.classes) < 2**15 else np.int32)
    np.save(partial / "labels.npy", labels)
    mean = (pixel_sum / len(kept)).astype(np.float32)  # (H, W, C), 0..255
    np.save(partial / "mean.npy", mean)
    sq = np.zeros(channels, dtype=np.float64)
    if encoding == "raw":
        images = np.lib.format.open_memmap(partial / "images.npy", mode="w+", dtype=np.uint8, shape=(len(kept), *shape))
        for first in range(0, len(kept), CHUNK):
            block = staged[kept[first : first + CHUNK]]
            images[first : first + len(block)] = block
            sq += np.square(block, dtype=np.float64).sum(axis=(0, 1, 2))
        images.flush()
        del images
    else:
        offsets = np.zeros(len(kept) + 1, dtype=np.int64)
        colorspace = "GRAY" if channels == 1 else "RGB"
        with open(partial / "images.bin", "wb") as f:
            for j, i in enumerate(kept):
                block = np.ascontiguousarray(staged[i])
                sq += np.square(block, dtype=np.float64).sum(axis=(0, 1))
                data = simplejpeg.encode_jpeg(block, quality=quality, colorspace=colorspace, colorsubsampling="420")
                f.write(data)
                offsets[j + 1] = offsets[j] + len(data)
        np.save(partial / "offsets.npy", offsets)
    (partial / "staged.npy").unlink()  # the open memmap keeps its pages until it is dropped

    count = len(kept) * size * size
    channel_mean = pixel_sum.sum(axis=(0, 1), dtype=np.float64) / count
    channel_std = np.sqrt(np.maximum(sq / count - channel_mean**2, 0.0))
    files = sorted(p.name for p in partial.iterdir())
    meta = {
        "format_version": FORMAT_VERSION,
        "num_images": len(kept),
        "num_rejected": len(rejects),
        "classes": list(source.classes),
        "image_shape": list(shape),
        "channels": channels,
        "encoding": encoding,
        "jpeg_quality": quality if encoding == "jpeg" else None,
        "resize": resize_policy,
        "size": size,
        "channel_mean": [round(float(v), 6) for v in channel_mean],
        "channel_std": [round(float(v), 6) for v in channel_std],
        "source": os.path.abspath(source.root),
        "created": {
            "command": command,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "lsvr_version": __version__,
            "seconds": round(time.time() - started, 2),
        },
        "checksums": {name: file_sha256(partial / name) for name in files},
    }
    (partial / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return meta
