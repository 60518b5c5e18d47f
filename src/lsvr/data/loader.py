"""The loader: epoch order, per-rank slices, each batch's draws, background reads, device copy.

Order: epoch e visits a permutation drawn from (seed, e). A global batch of B*W images is
cut into W rank slices of B, so the position (epoch, step) says exactly where any rank is,
whatever the world size. Each batch's random draws (every sample's crop window and mirror,
data/draws.py) are made once, from keys of (seed, epoch, position in the epoch's order), and
travel on the Batch. A reader (data/readers.py: host threads, or device decoding) turns
(rows, draws) into a Batch. Background threads read `prefetch` batches ahead: the paper's
parallel loading, without processes or sockets.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import torch

from lsvr.data.dataset import PreparedDataset, RecordError
from lsvr.data.device_decode import Decoder, DeviceReader
from lsvr.data.draws import Draws, sample_keys
from lsvr.data.randaugment import RandAugment
from lsvr.data.readers import Batch, BufferPool, HostReader, Reader
from lsvr.data.resolution import ResolutionRamp

Window = Literal["crop", "rrc", "centred"]  # the paper's random crop, RandomResizedCrop, evaluation's


class Loader:
    """Batches of one rank's share of each global batch, read ahead by background threads.

    indices: the dataset rows this loader covers (all of them when None), e.g. a holdout.
    shuffle: a fresh (seed, epoch) permutation each epoch and no partial last batch
    (training); otherwise the given order, every image exactly once (evaluation).
    crop: the side of the windows the reader cuts (and resizes) from each image: Batch.draws
    says which, for Augment to mirror and normalise. Without crop the images come whole and
    Batch.draws is None (evaluation of a fixed-shape set at its stored size).
    window: "crop" (the paper: a random crop x crop window and, with flip, its mirror), "rrc"
    (torchvision's RandomResizedCrop with `scale` and `ratio`, and the mirror) or "centred"
    (evaluation: torchvision's Resize(resize) + CenterCrop(crop), never mirrored); the
    windows of a set of varying shape (prepare --resize short) from each image's own size.
    decode: "host" (images decoded in the reading threads) or "device" (JPEG sets: the
    threads gather compressed bytes, the device decodes and cuts them; see device_decode).
    bad_records: "stop" or "skip" a record that does not decode (data/readers.py's
    HostReader; host decoding only): skipped rows are listed in `bad_rows`.
    resolution: progressive resizing (training): each batch's windows, drawn as above, are
    brought to the ramp's side at that batch's own fractional epoch in place of crop (a batch
    read ahead gets its own step's side, not the trainer's current one).
    randaugment: ops applied to each training batch's uint8 windows in the reading threads,
    per sample from its key (data/randaugment.py); None: off.
    epochs: the epochs training runs, so the read-ahead stops at the last (None: no end).
    """

    def __init__(
        self,
        dataset: PreparedDataset,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        indices: np.ndarray | None = None,
        rank: int = 0,
        world: int = 1,
        workers: int = 2,
        prefetch: int = 2,
        device: torch.device | str = "cpu",
        crop: int | None = None,
        flip: bool = True,
        window: Window = "crop",
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        resize: int | None = None,
        decode: str = "host",
        decoder: Decoder | None = None,
        bad_records: str = "stop",
        warn: Callable[[str], None] | None = None,
        resolution: ResolutionRamp | None = None,
        randaugment: RandAugment | None = None,
        epochs: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size  # per rank
        self.shuffle = shuffle
        self.seed = seed
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.rank, self.world = rank, world
        self.workers, self.prefetch = workers, prefetch
        self.device = torch.device(device)
        self.global_batch = batch_size * world
        self.crop, self.flip = crop, flip
        self.window, self.scale, self.ratio, self.resize = window, tuple(scale), tuple(ratio), resize
        self.resolution = resolution
        self.randaugment = randaugment
        if window == "centred" and resize is None:
            raise ValueError("Loader(window='centred') needs resize (the shorter side before the centre crop)")
        self._pool = BufferPool(prefetch + workers + 2, pinned=self.device.type == "cuda")
        # with more threads than batches in flight, each batch is read in slices by several
        self.parts = max(1, -(-workers // max(prefetch, 1))) if batch_size >= 2 * workers else 1
        self.epochs = epochs
        self._executor: ThreadPoolExecutor | None = None
        self._stream = None
        self._ahead: deque = deque()  # ((epoch, step), pending read), oldest first
        self._next: tuple[int, int] | None = None  # the next (epoch, step) to submit
        self._orders: dict[int, np.ndarray] = {}
        self.reader: Reader = (
            DeviceReader(dataset, self.device, decoder) if decode == "device"
            else HostReader(dataset, self._pool, shuffle=shuffle, bad_records=bad_records, warn=warn)
        )  # fmt: skip

    @property
    def bad_rows(self) -> dict[int, str]:
        """Row -> why it does not decode, for each row left out (data.bad_records=skip)."""
        return self.reader.bad_rows

    def __len__(self) -> int:
        """Steps in an epoch."""
        if self.shuffle:
            return len(self.indices) // self.global_batch
        return -(-len(self.indices) // self.global_batch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Dataset rows in the order epoch `epoch` visits them (the same on every rank)."""
        if not self.shuffle:
            return self.indices
        rng = np.random.default_rng([self.seed, epoch])
        return self.indices[rng.permutation(len(self.indices))]

    def rank_slice(self, step: int, count: int) -> slice:
        """This rank's share of global batch `step` among `count` images (an even split,
        the first ranks taking one more when count does not divide by the world size)."""
        start = step * self.global_batch
        size = min(self.global_batch, count - start)
        share, extra = divmod(size, self.world)
        begin = start + self.rank * share + min(self.rank, extra)
        return slice(begin, begin + share + (self.rank < extra))

    def _rows_and_draws(self, order: np.ndarray, epoch: int, step: int) -> tuple[np.ndarray, Draws | None, slice]:
        """Batch `step`'s rows for this rank, their draws, and where they sit in the epoch's order."""
        where = self.rank_slice(step, len(order))
        rows = order[where]
        draws = (
            None if self.crop is None else self.draws(rows, epoch=epoch, positions=np.arange(where.start, where.stop))
        )
        if draws is not None and self.resolution is not None:  # the same windows, brought to this batch's side
            draws = dataclasses.replace(draws, crop=self.resolution.at(epoch + step / len(self)))
        return rows, draws, where

    def _read(self, order: np.ndarray, epoch: int, step: int) -> Batch:
        """One rank's batch, read in a worker thread: its rows, their draws, then the reader."""
        rows, draws, where = self._rows_and_draws(order, epoch, step)
        batch = self.reader.read(rows, draws)
        if self.randaugment is not None and draws is not None:
            self._randaugment(batch, sample_keys(self.seed, epoch, np.arange(where.start, where.stop)))
        batch.step = step
        return batch

    def _randaugment(self, batch: Batch, keys: np.ndarray) -> None:
        """RandAugment on the batch's uint8 windows, in place, here in the reading thread: on CPU
        it runs beside the training step instead of inside it. A batch decoded on a CUDA side
        stream is waited for, augmented on this thread's stream and marked ready anew."""
        if batch.ready is not None:
            batch.ready.synchronize()
        self.randaugment(batch.images, keys)
        if batch.ready is not None:
            batch.ready = torch.cuda.Event()
            batch.ready.record()

    def draws(self, rows: np.ndarray, *, epoch: int, positions: np.ndarray) -> Draws:
        """The windows (and mirrors) of the images at rows, the samples at `positions` of the
        epoch's order: random ones from their keys, or evaluation's centred ones."""
        if self.window == "centred":
            return Draws.centred(self.dataset.sizes(rows), resize=self.resize, crop=self.crop)
        keys = sample_keys(self.seed, epoch, positions)
        if self.window == "rrc":
            return Draws.random_resized(keys, self.dataset.sizes(rows), crop=self.crop, scale=self.scale,
                                        ratio=self.ratio, flip=self.flip)  # fmt: skip
        if self.dataset.shape[0]:  # a fixed-shape set: today's draws, bit for bit
            return Draws.from_keys(keys, size=self.dataset.shape[0], crop=self.crop, flip=self.flip)
        return Draws.from_keys(keys, size=self.dataset.sizes(rows), crop=self.crop, flip=self.flip)

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of epoch `epoch` from `start_step` on, read `prefetch` ahead. The threads
        and the batches in flight outlive the call: a training loader (shuffle) reads on into
        the next epoch's first batches (up to `epochs`, where set), so the next call starts
        full, with no bubble at the epoch boundary. A call that does not continue where the
        last one left its read-ahead (a resume, a bench's fresh pass) drops it."""
        if not (self._ahead and self._ahead[0][0] == (epoch, start_step)):
            self._drop_ahead()
            self._next = (epoch, start_step)
        self._fill_ahead()
        while self._ahead and self._ahead[0][0][0] == epoch:
            _, pending = self._ahead.popleft()
            self._fill_ahead()
            yield self._to_device(self._collect(pending), self._device_stream())

    def close(self) -> None:
        """Drops the read-ahead and stops the threads (a later `batches` starts them again)."""
        self._drop_ahead()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _device_stream(self):
        if self.device.type == "cuda" and self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        return self._stream

    def _fill_ahead(self) -> None:
        """Submits reads until `prefetch` batches are in flight or nothing is left to read."""
        while len(self._ahead) < self.prefetch and self._next is not None:
            epoch, step = self._next
            if step >= len(self):  # the next epoch, where training goes on to it
                more = self.shuffle and (self.epochs is None or epoch + 1 < self.epochs) and len(self) > 0
                self._next = (epoch + 1, 0) if more else None
                continue
            self._ahead.append(((epoch, step), self._submit(epoch, step)))
            self._next = (epoch, step + 1)

    def _drop_ahead(self) -> None:
        for _, pending in self._ahead:
            for future in pending[0]:
                future.cancel()  # a read already running finishes into a buffer nobody reuses
        self._ahead.clear()

    def _pool_threads(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="lsvr-loader")
        return self._executor

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 1:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = self.epoch_order(epoch)
        return self._orders[epoch]

    def _submit(self, epoch: int, step: int) -> tuple:
        """A batch's reads, queued: one task, or (host reading, more threads than batches in
        flight) the batch cut in `parts` slices that as many threads read into one buffer."""
        pool, order = self._pool_threads(), self._order(epoch)
        if self.parts == 1 or not isinstance(self.reader, HostReader):
            return [pool.submit(self._read, order, epoch, step)], None
        rows, draws, where = self._rows_and_draws(order, epoch, step)
        rows, draws = self.reader.without_bad(rows, draws)
        batch = self.reader.begin(rows, draws)
        bounds = np.linspace(0, len(rows), self.parts + 1).astype(int).tolist()
        parts = [slice(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
        futures = [pool.submit(self._read_part, batch, rows, draws, where, epoch, part) for part in parts]
        return futures, (batch, epoch, step)

    def _collect(self, pending: tuple) -> Batch:
        """The batch of a submitted read, once every part of it is in. A part that meets a bad
        record (data.bad_records=skip) has the whole batch read again, the one-task way."""
        futures, split = pending
        if split is None:
            return futures[0].result()
        batch, epoch, step = split
        errors = [future.exception() for future in futures]  # every part done with the buffer
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            if not isinstance(error, RecordError) or self.reader.bad_records != "skip":
                raise error
            batch.release()
            batch = self._read(self._order(epoch), epoch, step)
        batch.step = step
        return batch

    def _read_part(self, batch: Batch, rows: np.ndarray, draws: Draws | None, where: slice, epoch: int,
                   part: slice) -> None:  # fmt: skip
        """One slice of a split batch, read into its rows of the batch's buffer, in a worker thread."""
        part_draws = draws.part(part) if draws is not None else None
        self.reader.fill(rows[part], part_draws, batch.images[part])
        if self.randaugment is not None and draws is not None:  # per sample from its key: slices are independent
            keys = sample_keys(self.seed, epoch, np.arange(where.start, where.stop)[part])
            self.randaugment(batch.images[part], keys)

    def _to_device(self, batch: Batch, stream) -> Batch:
        current = torch.cuda.current_stream(self.device) if stream is not None else None
        if batch.ready is not None:  # decoded on the device by a reading thread
            current.wait_event(batch.ready)
            for t in batch.tensors():
                t.record_stream(current)
            batch.ready = None
            return batch
        if stream is None:
            return batch
        # Copy from pinned memory on a side stream; the compute stream waits for it, not the host.
        with torch.cuda.stream(stream):
            images, labels = (t.to(self.device, non_blocking=True) for t in (batch.images, batch.labels))
            draws = batch.draws.to(self.device, non_blocking=True) if batch.draws is not None else None
            copied = torch.cuda.Event()
            copied.record(stream)
        self._pool.put(batch.images, copied)  # reusable once the copy is done
        current.wait_stream(stream)
        moved = Batch(images, labels, draws, step=batch.step)
        for t in moved.tensors():
            t.record_stream(current)
        return moved
