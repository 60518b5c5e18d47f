"""Member bytes from tar files, by offset, from prepare's decode threads.

An uncompressed tar is read with os.pread on a descriptor of its own per read: any thread, any
order, no lock, no descriptor left open between reads (a folder of 1,024 shards stays under the
open-file limit). The pool takes items in source order, so the reads advance through the file
as a folder's do, and the kernel's read-ahead sees one stream.

A compressed tar can only be decompressed forward: one stream per file, read under a lock.
A thread asking for a member further on decompresses up to it and keeps the members it passes
(those the other threads are about to ask for) in a bounded store; a member behind the stream
(a resumed prepare's first item, the disk check's sample) rewinds it, which costs a
re-decompression from the file's start but is never wrong.
"""

from __future__ import annotations

import bisect
import os
import threading
from pathlib import Path

import numpy as np

from lsvr.data.image import READ_CHUNK
from lsvr.data.tar_index import open_tar

KEPT_BYTES = 256 << 20  # the most a compressed stream keeps for the threads behind it


class MemberReader:
    """read(volume, offset, size) -> bytes (fewer than size where the file ends first)."""

    def __init__(self, volumes: list[Path], compressed: list[bool], items: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """items[v]: the offsets and sizes of volume v's items, so that a compressed stream
        knows which members it passes."""
        self.volumes, self.compressed = volumes, compressed
        self.streams = {v: _Stream(volumes[v], *items[v]) for v, c in enumerate(compressed) if c}

    def read(self, volume: int, offset: int, size: int) -> bytes:
        stream = self.streams.get(volume)
        if stream is not None:
            return stream.read(offset, size)
        fd = os.open(self.volumes[volume], os.O_RDONLY)
        try:
            return _read_all(lambda n, at: os.pread(fd, n, offset + at), size)
        finally:
            os.close(fd)

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()


def _read_all(read, size: int) -> bytes:
    """size bytes by read(n, at) calls of at most READ_CHUNK (one read returns at most about
    2 GiB on Linux: a bigger member read in one call came back short, and looked cut); fewer
    only where the file ends first."""
    parts, got = [], 0
    while got < size:
        part = read(min(READ_CHUNK, size - got), got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Stream:
    """One compressed tar's decompressed stream, read forward under a lock."""

    def __init__(self, path: Path, offsets: np.ndarray, sizes: np.ndarray) -> None:
        order = np.argsort(offsets, kind="stable")
        self.path, self.offsets = path, offsets[order].tolist()
        self.sizes = dict(zip(self.offsets, sizes[order].tolist(), strict=True))
        self.lock = threading.Lock()
        self.tar = None
        self.kept: dict[int, bytes] = {}
        self.kept_bytes = 0

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            data = self.kept.pop(offset, None)
            if data is not None:
                self.kept_bytes -= len(data)
                return data
            if self.tar is None:
                self.tar = open_tar(self.path)
            stream = self.tar.fileobj
            here = stream.tell()
            if offset >= here:  # keep the members passed on the way, for the threads behind
                first = bisect.bisect_left(self.offsets, here)
                for passed in self.offsets[first : bisect.bisect_left(self.offsets, offset)]:
                    if self.kept_bytes + self.sizes[passed] > KEPT_BYTES:
                        continue  # passed over (a member too large to read, or the store full): asked for, it rewinds
                    stream.seek(passed)
                    self.kept[passed] = _read_all(lambda n, _: stream.read(n), self.sizes[passed])
                    self.kept_bytes += len(self.kept[passed])
            stream.seek(offset)
            return _read_all(lambda n, _: stream.read(n), size)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
