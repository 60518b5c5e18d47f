"""`lsvr prepare`: convert a raw source into a prepared dataset (see docs/DATA_FORMAT.md).

Every item is decoded (JPEGs at a reduced scale where the size allows), resized to
size x size (or, with --resize short, to its shorter side `size`, aspect kept),
converted to the dataset's channel count and, for --encoding jpeg, encoded,
in a thread pool (libjpeg-turbo, Pillow and numpy release the GIL). Items that cannot
become an image go to rejects.tsv with the reason; they never stop the run. Results are
committed in source order, shard by shard (data/build.py), so the data files do not depend
on the worker count and a killed run continues where it stopped. The output is built in
OUT.partial and renamed to OUT at the end, so OUT is complete or absent. The mean is summed
in integers, so it does not depend on how the work was split.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import simplejpeg

from lsvr import __version__
from lsvr.data import output
from lsvr.data.build import Build
from lsvr.data.dataset import FIXED_VERSION, VARIABLE_VERSION, file_sha256
from lsvr.data.image import (
    MAX_IMAGE_BYTES,
    MAX_PIXELS,
    DecodeError,
    resize,
    resize_short,
    short_side_shape,
    to_channels,
)
from lsvr.data.pixel_sums import ShardSums, moment_sums
from lsvr.data.sources import IdxSource, Source, check_class_names
from lsvr.errors import InputError
from lsvr.folders import write_atomic
from lsvr.progress import progress_bar

RESIZE_POLICIES = ("squash", "center", "pad", "short")
OUTPUT_FILES = ("images.npy", "images.bin", "offsets.npy", "labels.npy", "mean.npy", "shapes.npy", "rejects.tsv")
JPEG_MAX_SIDE = 65_535  # the most a JPEG's header can say, per side
SHARD = 512  # items per commit: what a kill can lose, and the unit of work ahead


class WriteError(Exception):
    """OUT.partial could not be written (a full disk, an I/O error): the shards committed are
    kept, and the same command continues from them."""


def _tsv_field(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


class Converter:
    """One item from source to stored form, in a worker thread: (what is stored, per-channel
    sums of squares) or the DecodeError; its pixels are added to the shard's sums."""

    def __init__(self, source: Source, *, size: int, resize_policy: str, channels: int, encoding: str, quality: int,
                 max_size: int | None = None, max_bytes: int = MAX_IMAGE_BYTES):  # fmt: skip
        self.source, self.size, self.policy, self.channels = source, size, resize_policy, channels
        self.encoding, self.quality, self.max_size, self.max_bytes = encoding, quality, max_size, max_bytes
        self.min_side = size if resize_policy in ("squash", "center", "short") else 0
        self.variable = resize_policy == "short"  # images of varying shape: no per-pixel sums
        self.sums = ShardSums((1, 1, channels) if self.variable else (size, size, channels))

    def _resized(self, pixels: np.ndarray) -> np.ndarray:
        if not self.variable:
            return resize(pixels, self.size, self.policy)
        h, w, _ = pixels.shape
        nh, nw = short_side_shape(h, w, self.size, max_size=self.max_size)
        # refused before resizing: a 1 x 60,000 strip at 256 would be 15 million pixels long
        if max(nh, nw) > JPEG_MAX_SIDE or nh * nw > MAX_PIXELS:
            raise DecodeError(f"{w}x{h} pixels resized to {nw}x{nh}: over JPEG's {JPEG_MAX_SIDE} pixels a side"
                              f" or the {MAX_PIXELS} pixel limit (--max-size caps the longer side)",
                              "too-large")  # fmt: skip
        return resize_short(pixels, self.size, self.max_size)

    def convert(self, i: int) -> tuple[np.ndarray, bytes | np.ndarray] | DecodeError:
        """(pixels, what is stored), or the DecodeError."""
        try:
            pixels = self._resized(self.source.decode(i, self.min_side, max_bytes=self.max_bytes))
        except DecodeError as exc:
            return exc
        pixels = np.ascontiguousarray(to_channels(pixels, self.channels))
        if self.encoding == "raw":
            return pixels, pixels
        colorspace = "GRAY" if self.channels == 1 else "RGB"
        return pixels, simplejpeg.encode_jpeg(pixels, quality=self.quality, colorspace=colorspace,
                                              colorsubsampling="420")  # fmt: skip

    def __call__(self, i: int) -> tuple[bytes | np.ndarray, np.ndarray, tuple[int, int]] | DecodeError:
        """(what is stored, per-channel sums and sums of squares of 1 pixel in 16, its (height, width))."""
        result = self.convert(i)
        if isinstance(result, DecodeError):
            return result
        pixels, payload = result
        sampled = moment_sums(np.ascontiguousarray(pixels[::4, ::4]))  # the std: 1 pixel in 16
        if self.variable:  # the mean over every pixel, per channel
            self.sums.add_total(i // SHARD, moment_sums(pixels, squares=False)[0])
        else:
            self.sums.add(i // SHARD, pixels)  # here, while the pixels are in this core's cache
        return payload, sampled, pixels.shape[:2]


def _fingerprint(source: Source) -> str:
    digest = hashlib.sha256()
    for name, label in zip(source.names, source.labels.tolist(), strict=True):
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0" + str(label).encode() + b"\n")
    digest.update("\n".join(source.classes).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def prepare(
    source: Source,
    out: Path,
    *,
    size: int,
    resize_policy: str = "squash",
    max_size: int | None = None,
    encoding: str | None = None,
    channels: int | None = None,
    quality: int = 90,
    workers: int | None = None,
    max_rejects: float = 1.0,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    allow_cut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict:
    """Write the prepared dataset of `source` to `out`, continuing an unfinished run of the
    same command; returns its meta.json contents (plus already_prepared: True when OUT held
    the same already and nothing was written). encoding None: jpeg for --resize short, else raw.
    An item of more than max_image_bytes is a too-large reject, never read (each worker holds at
    most that many bytes of input); a source cut short (source.lost) is refused unless allow_cut."""
    if resize_policy not in RESIZE_POLICIES:
        raise InputError(f"--resize must be one of {', '.join(RESIZE_POLICIES)}")
    encoding = encoding or ("jpeg" if resize_policy == "short" else "raw")
    if encoding not in ("raw", "jpeg"):
        raise InputError("--encoding must be raw or jpeg")
    if not 8 <= size <= 4096:
        raise InputError(f"--size must be in 8..4096, got {size}")
    check_short(resize_policy, size=size, max_size=max_size, encoding=encoding)
    if not 1 <= quality <= 100:
        raise InputError(f"--quality must be in 1..100, got {quality}")
    if not 0.0 <= max_rejects <= 1.0:
        raise InputError(f"--max-rejects must be a fraction in 0..1, got {max_rejects}")
    if max_image_bytes < 1:
        raise InputError(f"--max-image-bytes must be a positive number of bytes, got {max_image_bytes}")
    if source.lost and not allow_cut:
        raise InputError(f"{source.lost}; pass --allow-cut to prepare what it holds")
    channels = channels or (1 if isinstance(source, IdxSource) else 3)
    plan = {
        "format_version": VARIABLE_VERSION if resize_policy == "short" else FIXED_VERSION,
        "source": os.path.abspath(source.root), "items": len(source),
        "fingerprint": _fingerprint(source), "size": size, "resize": resize_policy, "channels": channels,
        "encoding": encoding, "jpeg_quality": quality if encoding == "jpeg" else None,
    }  # fmt: skip
    if resize_policy == "short":  # only there: a fixed-shape set's plan (and meta.json) stays as it was
        plan["max_size"] = max_size
    if max_image_bytes != MAX_IMAGE_BYTES:  # only then: the plans of sets made before the limit stay the same
        plan["max_image_bytes"] = max_image_bytes
    check_class_names(source.classes, where=source.root)
    out = output.resolve_out(out)
    output.check_apart(source.root, out)
    output.check_location(out)
    created = output.missing_folders(out)
    try:
        held = output.lock(out)  # a second prepare into OUT is refused, naming this one
        try:
            return _build(source, out, plan, workers=workers or os.cpu_count() or 1, max_rejects=max_rejects,
                          overwrite=overwrite, progress=progress, command=command)  # fmt: skip
        finally:
            held.release()
    finally:
        output.remove_empty(created)


def check_short(policy: str, *, size: int, max_size: int | None, encoding: str) -> None:
    """--max-size belongs to --resize short, which stores images of varying shape: JPEG only."""
    if max_size is not None and policy != "short":
        raise InputError(f"--max-size caps the longer side of --resize short; --resize {policy} stores size x size")
    if max_size is not None and max_size < size:
        raise InputError(f"--max-size {max_size} is below --size {size}: the longer side cannot be the shorter")
    if policy == "short" and encoding == "raw":
        raise InputError("--resize short stores images of varying shape, which only --encoding jpeg holds")


def _build(source: Source, out: Path, plan: dict, *, workers: int, max_rejects: float, overwrite: bool,
           progress: bool, command: str) -> dict:  # fmt: skip
    """prepare() with OUT locked: continue or start OUT.partial, fill it, rename it to OUT."""
    done = output.lsvr_record(out / "meta.json", *output.META_KEYS)
    if done is not None and not overwrite:
        if done["plan"] == plan:
            print(f"{out}: already prepared by the same command", file=sys.stderr)
            return {**done, "already_prepared": True}  # for the caller's summary; not in meta.json
        raise InputError(f"{out}: already exists (pass --overwrite to replace it)")
    output.check_replaceable(out)  # with or without --overwrite: only lsvr's own output is replaced
    partial, build, n = output.partial_path(out), None, len(source)
    try:
        finished = output.lsvr_record(partial / "meta.json", *output.META_KEYS)
        if finished is not None and finished["plan"] == plan:  # killed between its meta.json and the rename
            meta = finished
        else:
            fresh = not partial.exists()
            side = 0 if plan["resize"] == "short" else plan["size"]  # 0: each image's own (shapes.npy)
            build = Build.open(partial, plan, (side, side, plan["channels"]), discard=overwrite)
            convert = Converter(source, size=plan["size"], resize_policy=plan["resize"], channels=plan["channels"],
                                encoding=plan["encoding"], quality=plan["jpeg_quality"] or 90,
                                max_size=plan.get("max_size"),
                                max_bytes=plan.get("max_image_bytes", MAX_IMAGE_BYTES))  # fmt: skip
            if build.done:
                print(f"{partial}: continuing from image {min(n, build.done * SHARD)} of {n}", file=sys.stderr)
            try:
                output.check_disk(out, convert, n - min(n, build.done * SHARD), n)
            except InputError:
                if fresh:  # refused before any work: leave nothing behind
                    shutil.rmtree(partial)
                raise
            started = time.time()
            _convert_all(build, convert, -(-n // SHARD), workers, max_rejects, progress)
            meta = _finish(build, source, plan, command, time.time() - started)
        Build.clean(partial)
        output.replace(out, partial)
    except OSError as exc:  # a full disk, an I/O error: the shards committed stay in OUT.partial
        kept = min(n, build.done * SHARD) if build is not None else 0
        where = f"kept in {partial}" if exc.filename else "kept there"
        raise WriteError(
            f"{exc.filename or partial}: {exc.strerror or exc}; {kept} of {n} images are {where}, and the same"
            " command continues from them once the disk has room"
        ) from None
    return meta


def _convert_all(build: Build, convert: Converter, shards: int, workers: int, max_rejects: float,
                 progress: bool) -> None:  # fmt: skip
    n = len(convert.source)
    limit = int(max_rejects * n)
    bar = progress_bar(total=n, initial=min(n, build.done * SHARD), unit="img", desc="prepare", enabled=progress,
                       every_s=30.0, smoothing=0.05)  # fmt: skip
    ahead = max(2, -(-4 * workers // SHARD) + 1)  # shards in flight: keeps every worker busy across a commit
    pool = ThreadPoolExecutor(workers, thread_name_prefix="lsvr-prepare")
    try:
        pending: deque = deque()
        todo = iter(range(build.done, shards))

        def submit(shard: int) -> None:
            items = range(shard * SHARD, min(n, shard * SHARD + SHARD))
            pending.append((shard, [pool.submit(convert, i) for i in items]))

        for shard in todo:
            submit(shard)
            if len(pending) >= ahead:
                break
        while pending:
            shard, futures = pending.popleft()
            _commit(build, convert, shard, [f.result() for f in futures])
            nxt = next(todo, None)
            if nxt is not None:
                submit(nxt)
            bar.update(len(futures))
            if build.rejected > limit:
                raise InputError(
                    f"{convert.source.root}: {build.rejected} of {n} inputs rejected, over --max-rejects {max_rejects}"
                    " (the work done is kept: rerun with a larger --max-rejects to continue)"
                )
    except KeyboardInterrupt:
        print(f"\ninterrupted: {min(n, build.done * SHARD)} of {n} images are kept; the same command continues",
              file=sys.stderr)  # fmt: skip
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _commit(build: Build, convert: Converter, shard: int, results: list) -> None:
    kept, payloads, rejects, shapes = [], [], [], []
    moments = np.zeros((2, build.shape[2]), np.uint64)
    for i, result in enumerate(results, start=shard * SHARD):
        if isinstance(result, DecodeError):
            rejects.append((i, result.kind, str(result)))
            continue
        payload, squares, shape = result
        kept.append(i)
        payloads.append(payload)
        shapes.append([int(v) for v in shape])
        moments += squares
    build.commit(shard, kept, payloads, rejects, convert.sums.pop(shard), moments,
                 shapes=shapes if convert.variable else None)  # fmt: skip


def _channel_stats(build: Build, shapes: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean over every stored pixel, std over the sampled ones (every fourth row
    and column), from the integer sums; shapes: each kept image's (height, width)."""
    heights, widths = np.asarray(shapes, np.int64).reshape(-1, 2).T
    channel_mean = build.pixel_sum.sum(axis=(0, 1), dtype=np.float64) / int(np.sum(heights * widths))
    sampled = int(np.sum(((heights + 3) // 4) * ((widths + 3) // 4)))
    first, second = build.moments.astype(np.float64) / sampled
    return channel_mean, np.sqrt(np.maximum(second - first**2, 0.0))


def _finish(build: Build, source: Source, plan: dict, command: str, seconds: float) -> dict:
    """Write labels, offsets, mean, rejects and meta.json from the committed shards."""
    partial, channels, size = build.path, build.shape[2], plan["size"]
    kept, sizes, rejects, shapes = build.records()
    n = len(source)
    if not kept:
        first = rejects[0][2] if rejects else "no items"
        raise InputError(f"{source.root}: none of its {n} items could be decoded (first: {first})")
    build.seal_data()
    with open(partial / "rejects.tsv", "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("path\tkind\treason\n")
        for i, kind, reason in rejects:
            f.write(f"{_tsv_field(source.names[i])}\t{kind}\t{_tsv_field(reason)}\n")
    labels = source.labels[np.array(kept)].astype(np.int16 if len(source.classes) < 2**15 else np.int32)
    np.save(partial / "labels.npy", labels)
    variable = plan["resize"] == "short"
    if variable:  # no mean image: a per-pixel mean has no meaning across shapes
        np.save(partial / "shapes.npy", np.asarray(shapes, np.int32).reshape(len(kept), 2))  # (N, 2) height, width
    else:
        np.save(partial / "mean.npy", (build.pixel_sum / len(kept)).astype(np.float32))  # (H, W, C), 0..255
    if build.encoding == "jpeg":
        np.save(partial / "offsets.npy", np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
    channel_mean, channel_std = _channel_stats(build, shapes if variable else [[size, size]] * len(kept))
    files = sorted(p.name for p in partial.iterdir() if p.name in OUTPUT_FILES)
    side = 0 if variable else size  # 0: each image's own, in shapes.npy
    meta = {
        "format_version": plan["format_version"],
        "num_images": len(kept),
        "num_rejected": len(rejects),
        "rejected_by_kind": dict(sorted(Counter(kind for _, kind, _ in rejects).items())),
        "classes": list(source.classes),
        "image_shape": [side, side, channels],
        "channels": channels,
        "encoding": build.encoding,
        "jpeg_quality": plan["jpeg_quality"],
        "resize": plan["resize"],
        "size": size,
        **({"max_size": plan["max_size"]} if "max_size" in plan else {}),
        "channel_mean": [round(float(v), 6) for v in channel_mean],
        "channel_std": [round(float(v), 6) for v in channel_std],
        "source": plan["source"],
        "plan": plan,
        "created": {
            "command": command,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "lsvr_version": __version__,
            "seconds": round(seconds, 2),
        },
        "checksums": {
            name: build.digest.hexdigest() if name == "images.bin" else file_sha256(partial / name) for name in files
        },
    }
    write_atomic(partial / "meta.json", (json.dumps(meta, indent=2) + "\n").encode(), tmp=partial / "meta.json.tmp")
    return meta
