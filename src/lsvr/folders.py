"""Output folders a command writes into: one writer at a time, refused early when they
cannot be written, and files replaced whole (`write_atomic`).

A `FolderLock` is an OS file lock (flock) on a lock file that names its holder as
`pid@host`. The kernel drops the lock when the holder dies, so a lock file left by a
killed run blocks nobody: the next run takes the lock and rewrites the holder's name.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

from lsvr.errors import InputError


def write_atomic(path: Path, data: bytes, *, tmp: Path | None = None,
                 at: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Replace `path` by `data` whole: write a temp file (`tmp`, default `.NAME.tmp` beside it),
    fsync it, rename it over `path`, fsync the folder. A kill leaves the old file or the new
    one, never half of either; a temp file it leaves is the caller's to clean. On OSError (a
    full disk) the temp file is removed and the error raised: the old file is as it was.

    at(point) is called at "mid-write" (half the bytes written and flushed), "before-fsync"
    and "before-rename": the named points a test may kill the process at (lsvr.train.faults).
    The one writer for checkpoints, config.yaml, a prepare's state and meta.json, exports."""
    path = Path(path)
    tmp = tmp if tmp is not None else path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            if at is not None:
                f.write(data[: len(data) // 2])
                f.flush()
                at("mid-write")
                f.write(data[len(data) // 2 :])
            else:
                f.write(data)
            f.flush()
            if at is not None:
                at("before-fsync")
            os.fsync(f.fileno())
        if at is not None:
            at("before-rename")
        os.replace(tmp, path)
        # the rename lives in the folder's entry: fsync of the file alone does not make it durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


class FolderLock:
    """Holds `lock_file` (flock, exclusive) for as long as it is acquired.

    `what` says what the folder holds, for the refusal: "run folder", "prepared dataset"."""

    def __init__(self, lock_file: Path, *, folder: Path, what: str) -> None:
        self.lock_file, self.folder, self.what = Path(lock_file), Path(folder), what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock or raise InputError naming the holder; never waits."""
        for _ in range(10):  # the file can be removed by its releasing holder between open and flock
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise InputError(f"{self.lock_file}: cannot be locked ({exc.strerror})") from None
                raise InputError(
                    f"{self.folder}: in use by another lsvr process ({holder or 'holder unknown'}) writing this"
                    f" {self.what}; wait for it to end or choose another folder"
                ) from None
            if _same_file(fd, self.lock_file):
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}@{platform.node()}\n".encode())
                except OSError:  # a full disk: no nameless lock file left behind, no lock kept
                    self.lock_file.unlink(missing_ok=True)
                    os.close(fd)
                    raise
                self._fd = fd
                return self
            os.close(fd)  # locked a file its holder had just removed: try the new one
        raise InputError(f"{self.lock_file}: could not be locked (it keeps changing)")

    def release(self, *, remove: bool = True) -> None:
        """Drop the lock; remove=True deletes the lock file first (while still holding it)."""
        if self._fd is None:
            return
        if remove:
            self.lock_file.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def check_writable(path: Path, *, what: str) -> None:
    """Refuse (InputError naming `path`) before any work starts when `path` cannot be
    created or written: its nearest existing folder takes a test file, or `path` itself,
    if it is a file, opens for appending."""
    path = Path(path)
    if path.is_file():
        try:
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise InputError(f"{path}: {what} cannot be written ({exc.strerror or exc})") from None
        return
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: {what} cannot be created ({folder} is not a folder)")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lsvr-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: {what} cannot be written ({folder}: {exc.strerror or exc})") from None
