"""The loader: epoch order, per-rank slices, background reads with prefetch, device copy.

Order: epoch e visits a permutation drawn from (seed, e). A global batch of B*W images is
cut into W rank slices of B, so the position (epoch, step) says exactly where any rank is,
whatever the world size. Each sample also gets a 63-bit key hashed from (seed, epoch,
position in the epoch's order): augmentation draws its crop and flip from it, so any rank
at any world size replays the same augmentation without saved generator state.
Background threads (numpy's take and simplejpeg release the GIL) read `prefetch`
batches ahead: the paper's parallel loading, without processes or sockets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from lsvr.data.augment import crop_offsets
from lsvr.data.dataset import PreparedDataset, RecordError
from lsvr.data.device_decode import Decoder, DeviceDecode
from lsvr.errors import InputError

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mix (SplitMix64's finaliser), vectorised; uint64 arithmetic wraps."""
    x = (x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)) & _MASK
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_keys(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """Per-sample random keys in [0, 2**63), from (seed, epoch, position in the epoch order)."""
    base = splitmix64(splitmix64(np.array([seed], np.uint64)) ^ np.uint64(epoch))
    return (splitmix64(base ^ positions.astype(np.uint64)) >> np.uint64(1)).astype(np.int64)


@dataclass
class Batch:
    images: torch.Tensor  # (B, H, W, C) uint8, on the device
    labels: torch.Tensor  # (B,) int64, on the device
    keys: torch.Tensor  # (B,) int64 augmentation keys, on the device
    step: int  # step within the epoch
    pool: BufferPool | None = None  # where `images` goes back to, on release()

    def release(self) -> None:
        """Hand the images' memory back to the loader for a later batch: call it once done
        with `images` (and any view of them). Without it, every batch gets fresh memory."""
        if self.pool is not None:
            self.pool.put(self.images)
            self.pool = None


class BufferPool:
    """Host batch buffers for reuse: a fresh 20 MB buffer costs a page fault per 4 KB on
    first touch, a tenth of what decoding or copying the images costs. On CUDA each pinned
    buffer comes back with the event of its device copy, and is reused once that is done."""

    def __init__(self, size: int, pinned: bool) -> None:
        self.size, self.pinned = size, pinned
        self.free: deque = deque()

    def get(self, shape: tuple[int, ...]) -> torch.Tensor:
        while True:
            try:
                buffer, event = self.free.popleft()  # deque operations are atomic: threads share it
            except IndexError:
                break
            if buffer.shape == shape:
                if event is not None:
                    event.synchronize()
                return buffer
        return torch.empty(shape, dtype=torch.uint8, pin_memory=self.pinned)

    def put(self, buffer: torch.Tensor, event=None) -> None:
        if len(self.free) < self.size:
            self.free.append((buffer, event))


class Loader:
    """Batches of one rank's share of each global batch, read ahead by background threads.

    indices: the dataset rows this loader covers (all of them when None), e.g. a holdout.
    shuffle: a fresh (seed, epoch) permutation each epoch and no partial last batch
    (training); otherwise the given order, every image exactly once (evaluation).
    crop: cut each image's random crop x crop window in the reading threads, with the draws
    Augment.train(cropped=True) expects (it mirrors them): less to copy and to move.
    decode: "host" (images decoded in the reading threads) or "device" (JPEG sets: the
    threads gather compressed bytes, the device decodes and crops them; see device_decode).
    bad_records: a record that does not decode stops the loader with a RecordError naming the
    dataset and the row ("stop"), or is left out from then on ("skip"): listed in `bad_rows`,
    reported once through `warn`. Host decoding only.
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
        decode: str = "host",
        decoder: Decoder | None = None,
        bad_records: str = "stop",
        warn: Callable[[str], None] | None = None,
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
        self.crop = crop
        self._pool = BufferPool(prefetch + workers + 2, pinned=self.device.type == "cuda")
        self.image_shape = dataset.shape if crop is None else (crop, crop, dataset.shape[2])
        self._labels = torch.from_numpy(dataset.labels)
        self._device_decode = DeviceDecode(dataset, self.device, decoder) if decode == "device" else None
        self.bad_records, self.warn = bad_records, warn
        self.bad_rows: dict[int, str] = {}  # row -> why it does not decode (bad_records=skip)

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

    def _read(self, order: np.ndarray, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One rank's batch on the host, read in a worker thread: (images, labels, keys).

        On CUDA the images are read straight into pinned memory here, off the training
        thread, so the device copy needs no staging copy and no pinning on the hot path."""
        where = self.rank_slice(step, len(order))
        rows = order[where]
        keys = sample_keys(self.seed, epoch, np.arange(where.start, where.stop))
        if self._device_decode is not None:
            return self._device_decode.read(rows, keys, self._labels[torch.from_numpy(rows)], self.crop)
        cuda = self.device.type == "cuda"
        rows, keys = self._without_bad(rows, keys)
        while True:
            images = self._pool.get((len(rows), *self.image_shape))
            try:
                self._fill(rows, keys, images.numpy())
                break
            except RecordError as exc:
                if self.bad_records != "skip":
                    raise
                self._pool.put(images)
                if exc.row not in self.bad_rows:
                    self.bad_rows[exc.row] = str(exc)
                    if self.warn is not None:
                        self.warn(f"{self.dataset.path}: row {exc.row} does not decode; skipped (data.bad_records)")
                rows, keys = self._without_bad(rows, keys)
        labels = self._labels[torch.from_numpy(rows)]
        keys = torch.from_numpy(keys)
        return (images, labels.pin_memory(), keys.pin_memory()) if cuda else (images, labels, keys)

    def _fill(self, rows: np.ndarray, keys: np.ndarray, out: np.ndarray) -> None:
        if self.crop is None:
            self.dataset.read(rows, out=out)
        else:
            top, left, _ = crop_offsets(keys, self.dataset.shape[0], self.crop)
            self.dataset.read_crops(rows, top, left, self.crop, out)

    def _without_bad(self, rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch without its known-bad rows: training puts good rows of the same batch in
        their place (every rank keeps the same batch size); evaluation drops them, so no image
        is scored twice."""
        if not self.bad_rows:
            return rows, keys
        bad = np.isin(rows, np.fromiter(self.bad_rows, np.int64))
        if not bad.any():
            return rows, keys
        if not self.shuffle:
            return rows[~bad], keys[~bad]
        good = rows[~bad]
        if not len(good):
            raise InputError(f"{self.dataset.path}: no row of a batch decodes (rows {rows[:5].tolist()} ...);"
                             " prepare the set again")  # fmt: skip
        rows = rows.copy()
        rows[bad] = np.resize(good, int(bad.sum()))
        return rows, keys

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of epoch `epoch` from `start_step` on, read `prefetch` ahead."""
        order = self.epoch_order(epoch)
        steps = range(start_step, len(self))
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        with ThreadPoolExecutor(self.workers, thread_name_prefix="lsvr-loader") as pool:
            pending: deque = deque()
            todo = iter(steps)
            for step in todo:
                pending.append((step, pool.submit(self._read, order, epoch, step)))
                if len(pending) >= self.prefetch:
                    break
            while pending:
                step, future = pending.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._read, order, epoch, nxt)))
                yield self._to_device(future.result(), step, stream)

    def _to_device(self, host: tuple, step: int, stream) -> Batch:
        if self._device_decode is not None:  # decoded on the device by a reading thread
            *moved, ready = host
            if ready is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(ready)
                for t in moved:
                    t.record_stream(current)
            return Batch(*moved, step=step)
        if stream is None:
            return Batch(*host, step=step, pool=self._pool)
        # Copy from pinned memory on a side stream; the compute stream waits for it, not the host.
        with torch.cuda.stream(stream):
            moved = [t.to(self.device, non_blocking=True) for t in host]
            copied = torch.cuda.Event()
            copied.record(stream)
        self._pool.put(host[0], copied)  # reusable once the copy is done
        torch.cuda.current_stream(self.device).wait_stream(stream)
        for t in moved:
            t.record_stream(torch.cuda.current_stream(self.device))
        return Batch(*moved, step=step)
