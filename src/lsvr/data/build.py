"""A prepared dataset under construction in OUT.partial, resumable after a kill at any moment.

The items are converted in shards, committed in source order. A commit writes the shard's
data at its place in the data file and fsyncs it, then its record (shards/NNNNNN.json: kept
items, JPEG sizes, rejects, and each image's height and width when they vary), then
the state (state.npz: shards done, rows and bytes written,
the integer pixel sums), each by write-to-temp and rename. After a kill, the state names
the last whole shard; anything written past it is overwritten by the run that continues.
plan.json pins what is being built, so a run with other options never continues it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from lsvr.data.output import META_KEYS, PLAN_KEYS, lsvr_record, not_lsvr_reason, refuse_link
from lsvr.errors import InputError
from lsvr.folders import write_atomic

HEADER_BYTES = 128  # the .npy header of images.npy, fixed so it can be rewritten in place


def _write(path: Path, data: bytes) -> None:
    """folders.write_atomic with the temp name NAME.tmp (output.BUILD_FILES knows it)."""
    write_atomic(path, data, tmp=path.with_name(path.name + ".tmp"))


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for C-ordered uint8 of `shape`, padded to HEADER_BYTES."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    body = text.ljust(HEADER_BYTES - 10 - 1) + "\n"
    header = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")
    assert len(header) == HEADER_BYTES, shape
    return header


class Build:
    """OUT.partial: `done` shards committed, `rows` images and `nbytes` data bytes written.
    image_shape (0, 0, C): images of varying shape (JPEG), whose pixel sums are per channel."""

    def __init__(self, partial: Path, plan: dict, image_shape: tuple[int, int, int]) -> None:
        self.path, self.plan, self.shape = partial, plan, image_shape
        self.encoding = plan["encoding"]
        self.data_path = partial / ("images.npy" if self.encoding == "raw" else "images.bin")
        self.row_bytes = int(np.prod(image_shape))
        self.done = self.rows = self.nbytes = 0
        self.rejected = 0
        sum_shape = image_shape if image_shape[0] else (1, 1, image_shape[2])
        self.pixel_sum = np.zeros(sum_shape, np.uint64)
        self.moments = np.zeros((2, image_shape[2]), np.uint64)  # sampled pixels: per-channel sums, sums of squares
        self.digest = hashlib.sha256()  # of images.bin as committed (JPEG): no second pass at the end

    @classmethod
    def open(cls, partial: Path, plan: dict, image_shape: tuple[int, int, int], *, discard: bool) -> Build:
        """Continue the build in `partial` if it has the same plan, else start one (a build
        with another plan is an error unless `discard`)."""
        build = cls(partial, plan, image_shape)
        plan_path = partial / "plan.json"
        refuse_link(partial)  # a user's link named OUT.partial: never written through or deleted
        if partial.exists():
            reason = not_lsvr_reason(partial, partial=True)
            if reason:  # a user's folder that happens to be named OUT.partial is never deleted
                raise InputError(f"{partial}: {reason}; lsvr never deletes it: move it away or choose another OUT")
            finished = lsvr_record(partial / "meta.json", *META_KEYS)  # killed between its meta.json and the rename
            found = lsvr_record(plan_path, *PLAN_KEYS) or (finished["plan"] if finished else None)
            if found == plan:
                build._load_state()
                return build
            if found is not None and not discard:
                raise InputError(
                    f"{partial}: an unfinished prepare with other options or input (pass --overwrite to discard it)"
                )
            shutil.rmtree(partial)
        # plan.json first: a folder killed before it is in place holds nothing converted yet
        partial.mkdir(parents=True)
        _write(plan_path, json.dumps(plan, indent=1).encode())
        (partial / "shards").mkdir()
        return build

    def _load_state(self) -> None:
        state_path = self.path / "state.npz"
        if not state_path.is_file():
            return
        with np.load(state_path, allow_pickle=False) as state:
            self.done, self.rows, self.nbytes, self.rejected = (int(v) for v in state["counts"])
            self.pixel_sum = state["pixel_sum"]
            self.moments = state["moments"]
        if self.encoding == "jpeg":  # the digest of what a killed run committed
            with open(self.data_path, "rb") as f:
                left = self.nbytes
                while left:
                    block = f.read(min(left, 1 << 22))
                    self.digest.update(block)
                    left -= len(block)

    def commit(self, shard: int, kept: list[int], payloads: list, rejects: list[tuple[int, str, str]],
               pixel_sum: np.ndarray, moments: np.ndarray, *, shapes: list | None = None) -> None:  # fmt: skip
        """Make shard `shard` durable: data, then its record, then the state. shapes: each kept
        image's [height, width], for a set of varying shapes."""
        assert shard == self.done, (shard, self.done)
        data = b"".join(p if isinstance(p, bytes) else p.tobytes() for p in payloads)
        at = HEADER_BYTES + self.rows * self.row_bytes if self.encoding == "raw" else self.nbytes
        fd = os.open(self.data_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if self.encoding == "raw" and at == HEADER_BYTES:
                os.pwrite(fd, npy_header((0, *self.shape)), 0)
            view = memoryview(data)
            while view:  # a nearly full disk writes part and returns the count; the next write raises
                written = os.pwrite(fd, view, at)
                view, at = view[written:], at + written
            os.fsync(fd)
        finally:
            os.close(fd)
        sizes = [len(p) for p in payloads] if self.encoding == "jpeg" else []
        record = {"kept": kept, "sizes": sizes, "rejects": rejects}
        if shapes is not None:
            record["shapes"] = shapes
        _write(self.path / "shards" / f"{shard:06d}.json", json.dumps(record).encode())
        # the in-memory counts change only once state.npz says so: a failed write leaves them as on disk
        done, rows, nbytes, rejected = (
            shard + 1,
            self.rows + len(kept),
            self.nbytes + len(data),
            self.rejected + len(rejects),
        )
        pixel_sum, moments = self.pixel_sum + pixel_sum, self.moments + moments
        counts = np.array([done, rows, nbytes, rejected], np.int64)
        state = io.BytesIO()
        np.savez(state, counts=counts, pixel_sum=pixel_sum, moments=moments)
        write_atomic(self.path / "state.npz", state.getvalue(), tmp=self.path / "state.tmp.npz")
        self.done, self.rows, self.nbytes, self.rejected = done, rows, nbytes, rejected
        self.pixel_sum, self.moments = pixel_sum, moments
        if self.encoding == "jpeg":
            self.digest.update(data)

    def records(self) -> tuple[list[int], list[int], list[tuple[int, str, str]], list[list[int]]]:
        """Every committed shard's kept items, JPEG sizes, rejects and image shapes (empty for
        a fixed-shape set), in order."""
        kept, sizes, rejects, shapes = [], [], [], []
        for shard in range(self.done):
            record = json.loads((self.path / "shards" / f"{shard:06d}.json").read_text())
            kept += record["kept"]
            sizes += record["sizes"]
            rejects += [tuple(r) for r in record["rejects"]]
            shapes += record.get("shapes", [])
        return kept, sizes, rejects, shapes

    def seal_data(self) -> None:
        """Cut the data file to what the committed shards wrote (a kill may have left more)."""
        if self.encoding == "raw":
            with open(self.data_path, "r+b" if self.data_path.exists() else "w+b") as f:
                f.write(npy_header((self.rows, *self.shape)))
                f.truncate(HEADER_BYTES + self.rows * self.row_bytes)
        else:
            with open(self.data_path, "ab") as f:
                f.truncate(self.nbytes)

    @staticmethod
    def clean(partial: Path) -> None:
        """Remove the construction files once meta.json is written."""
        shutil.rmtree(partial / "shards", ignore_errors=True)
        for name in ("state.npz", "state.tmp.npz", "plan.json", "meta.json.tmp"):
            (partial / name).unlink(missing_ok=True)
