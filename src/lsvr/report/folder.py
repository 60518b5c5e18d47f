"""The report folder: refused before the eval pass where it holds anything a report did not write,
and written so that a killed eval never leaves a page that passes for a complete report.

Order: the old index.html goes first, then report.json and per_class.csv, then the new index.html,
each replaced whole (lsvr.folders.write_atomic). index.html is the mark of a complete report: a kill
at any point leaves either no page, or the old report whole, or the new one whole (its JSON and CSV
beside it), never a page beside numbers it does not show."""

from __future__ import annotations

import json
from pathlib import Path

from lsvr.errors import InputError
from lsvr.folders import check_writable, write_atomic
from lsvr.report.page import GENERATOR

PAGE, NUMBERS, TABLE = "index.html", "report.json", "per_class.csv"
CSV_HEADER = "index,class,images,predicted,correct,precision,recall,top5"
FILES = (NUMBERS, TABLE, PAGE)  # in the order they are written: the page last


def _is_ours(path: Path) -> bool:
    """A file a report wrote (its generator mark), or a temp file write_atomic left behind."""
    name = path.name
    if name.startswith(".") and name.endswith(".tmp") and name[1:-4] in FILES:
        return path.is_file() and not path.is_symlink()
    if name not in FILES or not path.is_file() or path.is_symlink():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
        if name == PAGE:
            return f'<meta name="generator" content="{GENERATOR}">' in head
        if name == TABLE:
            return head.splitlines()[:1] == [CSV_HEADER]
        return head.startswith(json.dumps({"generator": GENERATOR})[:-1])  # report.json opens with its mark
    except OSError:
        return False


def check_report_folder(folder: Path) -> None:
    """Refuse (InputError, one line) a --report folder that cannot take a report: not a folder,
    not writable, or holding anything but an earlier report's files (never replaced: a user's)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--report {folder}: not a folder")
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if not _is_ours(p))
        if foreign:
            raise InputError(f"--report {folder}: holds {foreign[0]!r}, which no report wrote; give a new or empty"
                             f" folder, or one holding an earlier report ({', '.join(FILES)})")  # fmt: skip
    check_writable(folder, what="the report folder")


def write_report_files(folder: Path, files: dict[str, bytes]) -> Path:
    """Write {name: bytes} of FILES into folder (checked again first: it may have changed during
    the eval pass), the page last; returns the page's path."""
    folder = Path(folder)
    check_report_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PAGE).unlink(missing_ok=True)  # from here until the end, no page: no half report shown as whole
    for name in FILES:
        write_atomic(folder / name, files[name])
    return folder / PAGE
