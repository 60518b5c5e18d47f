"""One rank's batch, read: the Batch, and the two readers behind `read(rows, draws) -> Batch`.

HostReader: images read (raw sets) or decoded by libjpeg-turbo (JPEG sets) in the loader's
threads, each cut to its window as it is read (and resized to crop x crop where the window
is another size: RandomResizedCrop, evaluation's Resize + CenterCrop); data/device_decode.py's DeviceReader:
the threads gather compressed bytes and the device decodes and cuts them. Either way the
Batch carries the draws that chose the windows, for Augment to mirror and normalise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from lsvr.data.dataset import PreparedDataset, RecordError
from lsvr.data.draws import Draws
from lsvr.errors import InputError


@dataclass
class Batch:
    images: torch.Tensor  # (B, crop, crop, C) uint8, cut at the draws' windows; (B, H, W, C) when draws is None
    # (resized windows: a view of (B, C, crop, crop) memory, see HostReader.read)
    labels: torch.Tensor  # (B,) int64
    draws: Draws | None  # each image's crop window and mirror; None: whole images (evaluation)
    step: int = 0  # step within the epoch
    pool: BufferPool | None = None  # where `images` goes back to, on release()
    ready: torch.cuda.Event | None = None  # decoded on a CUDA side stream: done when this is

    def release(self) -> None:
        """Hand the images' memory back to the loader for a later batch: call it once done
        with `images` (and any view of them). Without it, every batch gets fresh memory."""
        if self.pool is not None:
            self.pool.put(self.images)
            self.pool = None

    def tensors(self) -> list[torch.Tensor]:
        return [self.images, self.labels, *(self.draws.tensors() if self.draws is not None else ())]


class Reader(Protocol):
    """Reads dataset rows into a Batch, each image cut at its window when draws are given."""

    bad_rows: dict[int, str]  # row -> why it does not decode (left out with bad_records=skip)

    def read(self, rows: np.ndarray, draws: Draws | None) -> Batch: ...


class BufferPool:
    """Host batch buffers for reuse: a fresh 20 MB buffer costs a page fault per 4 KB on
    first touch, a tenth of what decoding or copying the images costs. On CUDA each pinned
    buffer comes back with the event of its device copy, and is reused once that is done."""

    def __init__(self, size: int, pinned: bool) -> None:
        self.size, self.pinned = size, pinned
        self.free: deque = deque()

    def get(self, shape: tuple[int, ...], *, planar: bool = False) -> torch.Tensor:
        """A (B, H, W, C) uint8 buffer; planar: its memory (B, C, H, W), the tensor a permuted view."""
        while True:
            try:
                buffer, event = self.free.popleft()  # deque operations are atomic: threads share it
            except IndexError:
                break
            if buffer.shape == shape and buffer.is_contiguous() != planar:
                if event is not None:
                    event.synchronize()
                return buffer
        if not planar:
            return torch.empty(shape, dtype=torch.uint8, pin_memory=self.pinned)
        b, h, w, c = shape
        return torch.empty((b, c, h, w), dtype=torch.uint8, pin_memory=self.pinned).permute(0, 2, 3, 1)

    def put(self, buffer: torch.Tensor, event=None) -> None:
        if len(self.free) < self.size:
            self.free.append((buffer, event))


class HostReader:
    """Rows read in the calling (loader) thread into a pooled host buffer: numpy's take and
    simplejpeg release the GIL. With draws, only each crop window is copied (raw) or kept
    (JPEG): less to copy and to move. On CUDA the buffers are pinned, so the device copy
    needs no staging copy and no pinning on the hot path.

    bad_records: a record that does not decode stops the loader with a RecordError naming the
    dataset and the row ("stop"), or is left out from then on ("skip"): listed in `bad_rows`,
    reported once through `warn`. shuffle (training): a bad row's place is taken by a good row
    of the same batch; otherwise (evaluation) it is dropped."""

    def __init__(self, dataset: PreparedDataset, pool: BufferPool, *, shuffle: bool, bad_records: str = "stop",
                 warn: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.dataset, self.pool, self.shuffle = dataset, pool, shuffle
        self.bad_records, self.warn = bad_records, warn
        self.bad_rows: dict[int, str] = {}
        self._labels = torch.from_numpy(dataset.labels)

    def read(self, rows: np.ndarray, draws: Draws | None) -> Batch:
        rows, draws = self.without_bad(rows, draws)
        while True:
            batch = self.begin(rows, draws)
            try:
                self.fill(rows, draws, batch.images)
                return batch
            except RecordError as exc:
                if self.bad_records != "skip":
                    raise
                batch.release()
                if exc.row not in self.bad_rows:
                    self.bad_rows[exc.row] = str(exc)
                    if self.warn is not None:
                        self.warn(f"{self.dataset.path}: row {exc.row} does not decode; skipped (data.bad_records)")
                rows, draws = self.without_bad(rows, draws)

    def begin(self, rows: np.ndarray, draws: Draws | None) -> Batch:
        """The Batch of rows (known-bad rows already out) with its images' buffer, not yet filled:
        `fill` fills it, whole or (the loader's split batches) a slice of rows at a time."""
        shape = self.dataset.shape if draws is None else (draws.crop, draws.crop, self.dataset.shape[2])
        # resized windows come out of torch's resize channels-first: a batch whose memory is
        # (B, C, crop, crop) takes them as a plain copy, and the float conversion reads it as it
        # is (measured, one thread, 224 px: 0.15 ms an image to write them into NHWC memory)
        planar = draws is not None and (draws.resized or not self.dataset.shape[0]) and shape[2] > 1  # grey: the same
        images = self.pool.get((len(rows), *shape), planar=planar)
        labels = self._labels[torch.from_numpy(rows)]
        if self.pool.pinned:
            labels, draws = labels.pin_memory(), draws.pin_memory() if draws is not None else None
        return Batch(images, labels, draws, pool=self.pool)

    def fill(self, rows: np.ndarray, draws: Draws | None, images: torch.Tensor) -> None:
        """Reads rows, cut at draws' windows, into images (a batch's buffer or a slice of its rows):
        a RecordError names a row that does not decode."""
        self._fill(rows, draws, images.numpy())

    def _fill(self, rows: np.ndarray, draws: Draws | None, out: np.ndarray) -> None:
        if draws is None:
            self.dataset.read(rows, out=out)
        elif not draws.resized and self.dataset.shape[0]:  # a fixed-shape set cut at crop x crop windows
            self.dataset.read_crops(rows, draws.top.numpy(), draws.left.numpy(), draws.crop, out)
        else:
            self._fill_resized(rows, draws, out)

    def _fill_resized(self, rows: np.ndarray, draws: Draws, out: np.ndarray) -> None:
        """Each window cut and resized to crop x crop: a JPEG decoded at the largest reduced
        scale that keeps crop pixels on the window's shorter side (libjpeg-turbo's 1/2, 1/4,
        1/8 decodes cost a fraction of a whole one), the window's bounds scaled with it."""
        jpeg = self.dataset.encoding == "jpeg"
        target = torch.from_numpy(out)  # (B, crop, crop, C), planar memory (read): each row a plain copy
        bounds = zip(*(t.tolist() for t in (draws.top, draws.left, draws.height, draws.width)), strict=True)
        for j, (i, window) in enumerate(zip(rows.tolist(), bounds, strict=True)):
            scale = decode_scale(min(window[2:]), draws.crop) if jpeg else 1
            image = self.dataset.image(i, scale=scale)  # (h, w, C) uint8
            rows_, cols = scaled(window, scale)
            window = image[rows_, cols]  # (h, w, C)
            if not window.flags.writeable:  # a raw set's memory map: torch takes no read-only array
                window = window.copy()
            target[j].copy_(resize_window(torch.from_numpy(window), draws.crop))

    def without_bad(self, rows: np.ndarray, draws: Draws | None) -> tuple[np.ndarray, Draws | None]:
        """The batch without its known-bad rows: training puts good rows of the same batch in
        their place (every rank keeps the same batch size, and each place its draws);
        evaluation drops them, so no image is scored twice."""
        if not self.bad_rows:
            return rows, draws
        bad = np.isin(rows, np.fromiter(self.bad_rows, np.int64))
        if not bad.any():
            return rows, draws
        if not self.shuffle:
            return rows[~bad], draws.select(~bad) if draws is not None else None
        good = rows[~bad]
        if not len(good):
            raise InputError(f"{self.dataset.path}: no row of a batch decodes (rows {rows[:5].tolist()} ...);"
                             " prepare the set again")  # fmt: skip
        rows = rows.copy()
        rows[bad] = np.resize(good, int(bad.sum()))
        return rows, draws


SCALES = (8, 4, 2, 1)  # libjpeg-turbo's reduced decodes that pay (a 3/4 decode was slower than a whole one)


def decode_scale(side: int, crop: int) -> int:
    """The largest JPEG decode scale at which a window of shorter side `side` keeps `crop` pixels."""
    return next(s for s in SCALES if side >= crop * s or s == 1)


def scaled(window: tuple[int, int, int, int], scale: int) -> tuple[slice, slice]:
    """The (top, left, height, width) window of stored pixels as row and column slices of the
    image decoded at 1/scale: bounds rounded half up, at least one pixel each way."""
    top, left, height, width = window

    def at(v: int) -> int:
        return (v + scale // 2) // scale

    return slice(at(top), max(at(top + height), at(top) + 1)), slice(at(left), max(at(left + width), at(left) + 1))


def resize_window(window: torch.Tensor, crop: int) -> torch.Tensor:
    """A (h, w, C) uint8 window as (crop, crop, C) uint8: bilinear, antialiased when it shrinks
    (torchvision's Resize on tensors; PIL's bilinear filter within rounding). Cut as it is when
    already crop x crop. On CPU torch resizes the uint8 window itself, channels-last in (its
    output is NCHW): timed in one thread (time.thread_time over 300 random 60-256 px windows
    of a 256 x 256 x 3 image, to 224, each written into an HWC batch row), 2,490 windows per
    CPU-second with torch's copy_ into the row, 2,210 from a channels-first copy, 1,410 with
    numpy's assignment, 1,320 for Pillow's Image.resize with box=. On a GPU it resizes floats
    (its antialiased kernel takes no uint8)."""
    if window.shape[0] == window.shape[1] == crop:
        return window
    pixels = window.permute(2, 0, 1)[None]  # (1, C, h, w), NHWC in memory
    if pixels.device.type == "cpu":
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        resized = F.interpolate(pixels, size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)
    else:
        resized = F.interpolate(pixels.float(), size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized[0].permute(1, 2, 0)  # (crop, crop, C)
