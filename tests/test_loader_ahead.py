"""The loader's threads across epochs: read-ahead over the epoch boundary, and batches split
over more threads than there are batches in flight, each bit for bit what one thread reads."""

import shutil
import threading
import time

import numpy as np
import pytest
import torch
from tests.support import cli, write_tree

from lsvr.data.dataset import PreparedDataset, RecordError
from lsvr.data.loader import Loader
from lsvr.data.randaugment import RandAugment


@pytest.fixture(scope="module")
def jpeg_set(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("ahead-jpeg")
    write_tree(root / "src", {"a": 24, "b": 24}, size=(80, 80))
    assert cli("prepare", root / "src", root / "ds", "--size", "64", "--encoding", "jpeg", "--no-progress") == 0
    return PreparedDataset(root / "ds")


def logged(loader: Loader) -> list:
    """Every fill the loader's reader makes (a whole batch or a split batch's slice), as
    (first row, thread), in the order made."""
    reads, fill = [], loader.reader.fill

    def fill_logged(rows, draws, images):
        reads.append((int(rows[0]), threading.get_ident()))
        return fill(rows, draws, images)

    loader.reader.fill = fill_logged
    return reads


def read_soon(reads: list, row: int) -> bool:
    """Whether a read of `row` starts within a few seconds (the threads run on their own)."""
    deadline = time.monotonic() + 10
    while row not in [r for r, _ in reads] and time.monotonic() < deadline:
        time.sleep(0.01)
    return row in [r for r, _ in reads]


def test_the_next_epoch_is_read_ahead_while_this_one_ends(jpeg_set):
    loader = Loader(jpeg_set, batch_size=8, shuffle=True, seed=1, workers=2, prefetch=2, crop=48)
    reads = logged(loader)
    for _ in loader.batches(0):
        pass
    assert read_soon(reads, int(loader.epoch_order(1)[0]))  # epoch 1's first batch, asked before its call
    ahead = [(b.images.clone(), b.labels.clone()) for b in loader.batches(1)]
    fresh = [(b.images, b.labels) for b in Loader(jpeg_set, batch_size=8, shuffle=True, seed=1, crop=48).batches(1)]
    assert len(ahead) == len(fresh) == len(loader)
    assert all(torch.equal(a, b) and torch.equal(la, lb) for (a, la), (b, lb) in zip(ahead, fresh, strict=True))


def test_the_read_ahead_stops_at_the_last_epoch_and_a_resume_drops_it(jpeg_set):
    loader = Loader(jpeg_set, batch_size=8, shuffle=True, seed=1, workers=2, prefetch=2, crop=48, epochs=1)
    reads = logged(loader)
    for _ in loader.batches(0):
        pass
    time.sleep(0.2)
    assert len(reads) == len(loader)  # nothing of an epoch 1 that does not come
    batches = [b.step for b in loader.batches(0, start_step=3)]  # not where the last call left off
    assert batches == list(range(3, len(loader)))
    loader.close()
    assert [b.step for b in loader.batches(0)] == list(range(len(loader)))  # a closed loader starts again


@pytest.mark.parametrize("window", ["crop", "rrc"])
def test_split_batches_equal_whole_ones_and_use_every_thread(jpeg_set, window):
    kwargs = {"batch_size": 16, "shuffle": True, "seed": 2, "crop": 48, "window": window,
              "randaugment": RandAugment(num_ops=2, magnitude=9), "epochs": 1}  # fmt: skip
    split = Loader(jpeg_set, workers=4, prefetch=1, **kwargs)
    assert split.parts == 4
    reads = logged(split)
    whole = Loader(jpeg_set, workers=1, prefetch=1, **kwargs)
    assert whole.parts == 1
    for a, b in zip(split.batches(0), whole.batches(0), strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.draws.top, b.draws.top) and torch.equal(a.draws.mirror, b.draws.mirror)
    assert len({thread for _, thread in reads}) > 1
    assert len(reads) == 4 * len(split)


def test_a_bad_record_in_a_split_batch_is_skipped_as_in_a_whole_one(jpeg_set, tmp_path):
    target = tmp_path / "zeroed"
    shutil.copytree(jpeg_set.path, target)
    offsets = np.load(target / "offsets.npy")
    with open(target / "images.bin", "r+b") as f:  # row 5's bytes zeroed in place
        f.seek(int(offsets[5]))
        f.write(bytes(int(offsets[6] - offsets[5])))
    warnings = []
    split = Loader(PreparedDataset(target), batch_size=16, shuffle=True, seed=0, workers=4, prefetch=1, crop=48,
                   bad_records="skip", warn=warnings.append)  # fmt: skip
    assert split.parts == 4
    batches = [b for b in split.batches(0)]
    assert [len(b.labels) for b in batches] == [16] * len(split)  # the bad row's place taken by a good one
    assert list(split.bad_rows) == [5] and len(warnings) == 1
    stop = Loader(PreparedDataset(target), batch_size=16, shuffle=True, seed=0, workers=4, prefetch=1, crop=48)
    with pytest.raises(RecordError, match="row 5"):
        for _ in stop.batches(0):
            pass
