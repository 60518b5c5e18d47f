"""`lsvr predict`'s pipeline: image files in batches, decoded by a pool of threads sized from the
CPUs other work leaves free, the next batch decoding while the model scores this one.

    lsvr predict CHECKPOINT FOLDER --json [--batch 64]

Each file goes through lsvr.inference.load_image (a JPEG decoded at a reduced DCT scale that
still covers the side it is resized to, unless the record's reduced_decode is False), each
batch through eval_batch, so a batch's pixels are those of its images loaded one at a time, and
the results come back in the order the paths were given, bad files where they stood.

    paths --(pool: load_image per file)--> batch k+1 (ahead thread: eval_batch)
                                                  \\-- while the caller's score() runs batch k

Why threads and not processes: libjpeg-turbo (simplejpeg), Pillow's resize and torch's ops
release the GIL, as in the training loader's reading threads (lsvr.data.loader).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from lsvr import cpus
from lsvr.data.readers import Batch
from lsvr.inference import load_images
from lsvr.memory import keep_activations
from lsvr.preprocess import Preprocess

BATCH = 64  # images decoded and scored at a time: a folder of any size fits in memory


@dataclass
class Scored:
    """One batch's outcome: the readable files in the order given, their class probabilities
    (len(paths), classes) (None where no file of the batch could be read), and one line for each
    file that could not be."""

    paths: list[Path]
    probs: torch.Tensor | None
    bad: list[str]


def decode_threads() -> int:
    """The decoding pool's size: this process's share of the CPUs, at most those other work leaves
    free now (lsvr.cpus.threads_free), at least 1."""
    return cpus.threads_free()


def take_free_cpus() -> int:
    """decode_threads(), also set as torch's intra-op threads unless OMP_NUM_THREADS says how many:
    OpenMP threads on CPUs that other work keeps busy spin against it (lsvr.cpus)."""
    threads = decode_threads()
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(threads)
    return threads


def loaded_batches(paths: list[Path], pre: Preprocess, *, batch: int, pool: ThreadPoolExecutor
                   ) -> Iterator[tuple[Batch | None, list[Path], list[str]]]:  # fmt: skip
    """load_images of each `batch` paths in turn, in order, the files decoded by pool; while the
    caller holds one batch, the next one is being read (one ahead: memory stays two batches)."""
    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    with ThreadPoolExecutor(1, thread_name_prefix="lsvr-predict-ahead") as ahead:

        def start(k: int) -> Future | None:
            return ahead.submit(load_images, chunks[k], pre, pool=pool) if k < len(chunks) else None

        pending = start(0)
        for k in range(len(chunks)):
            current = pending.result()
            pending = start(k + 1)  # decodes while the caller scores `current`
            yield current


def scored_batches(paths: list[Path], pre: Preprocess, score: Callable[[Batch], torch.Tensor], *,
                   batch: int = BATCH, threads: int | None = None) -> Iterator[Scored]:  # fmt: skip
    """score (a batch of eval_batch -> its probabilities) over every readable file of paths, a
    batch at a time, as loaded_batches reads them. threads: the decoding pool (None: decode_threads()).
    Meanwhile every allocation comes from the heap and stays there (lsvr.memory.keep_activations):
    each batch's activations reuse the memory of the one before instead of being page-faulted in
    afresh, which cost a quarter of resnet18's CPU time here."""
    keep_activations()
    try:
        with ThreadPoolExecutor(threads or decode_threads(), thread_name_prefix="lsvr-predict-decode") as pool:
            for images, good, bad in loaded_batches(paths, pre, batch=batch, pool=pool):
                yield Scored(good, score(images) if images is not None else None, bad)
    finally:
        keep_activations(False)
