"""Folder locks and write checks (lsvr/folders.py): one writer at a time, stale locks free."""

import subprocess
import sys

import pytest

from lsvr.errors import InputError
from lsvr.folders import FolderLock, check_writable


def test_second_holder_is_refused_naming_the_first(tmp_path):
    first = FolderLock(tmp_path / ".lock", folder=tmp_path, what="run folder").acquire()
    with pytest.raises(InputError, match=r"in use by another lsvr process \(\d+@"):
        FolderLock(tmp_path / ".lock", folder=tmp_path, what="run folder").acquire()
    first.release()
    assert not (tmp_path / ".lock").exists()
    with FolderLock(tmp_path / ".lock", folder=tmp_path, what="run folder") as again:
        assert again.held


@pytest.mark.slow
def test_lock_file_of_a_killed_holder_blocks_nobody(tmp_path):
    code = (
        "import os, sys; from pathlib import Path; from lsvr.folders import FolderLock;"
        f"FolderLock(Path({str(tmp_path / '.lock')!r}), folder=Path('.'), what='x').acquire();"
        "os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert (tmp_path / ".lock").read_text().strip()  # the dead holder's name is still there
    with FolderLock(tmp_path / ".lock", folder=tmp_path, what="run folder") as lock:
        assert lock.held


def test_check_writable_refuses_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    check_writable(tmp_path / "new" / "deeper", what="run folder")  # nothing created
    assert not (tmp_path / "new").exists()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr("tempfile.NamedTemporaryFile", refuse)
    with pytest.raises(InputError, match=r"new/deeper: run folder cannot be written"):
        check_writable(tmp_path / "new" / "deeper", what="run folder")
