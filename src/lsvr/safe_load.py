"""Loading torch files safely: weights_only=True always, refusals as one-line InputErrors."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lsvr.errors import InputError

# torch.save writes every member of its zip STORED, so a real checkpoint declares about its
# own file size (a file of 134,219,369 bytes declared 134,217,977 here). A DEFLATE member may
# declare far more: a 131 kB file declaring 134 MB was expanded whole by torch.load. Twice
# the file size is more than any packing of float weights gains, and far below a bomb's ratio.
MAX_EXPANSION = 2
SLACK_BYTES = 1 << 20  # headers and tiny members of a small file


def unpickling_reason(exc: Exception) -> str:
    """The one line of torch's long weights_only refusal that names what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.split(" Please use")[0].replace("WeightsUnpickler error: ", "")
    return lines[0] if lines else "unsafe content"


def check_archive(path: Path, *, what: str) -> None:
    """Refuse a zip whose members declare more bytes than the file could hold (a zip bomb),
    before torch.load allocates what they declare. Files that are not zips pass: torch.load
    reports them."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            declared = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load names the damage
    size = path.stat().st_size
    if declared > MAX_EXPANSION * size + SLACK_BYTES:
        raise InputError(
            f"{path}: refused, a {what} of {size:,} bytes that declares {declared:,} bytes unpacked"
            " (a zip bomb, or not written by torch.save)"
        )


def check_format(path: Path, *, what: str) -> None:
    """Refuse a file that torch.save cannot have written: empty, or neither a zip (its format
    since torch 1.6) nor a pickle (the legacy format opens with the PROTO opcode 0x80). A text
    file otherwise reached torch's unpickler, which failed with a bare `KeyError: 101`."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise InputError(f"{path}: the {what} cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise InputError(f"{path}: an empty file, not a {what} file")
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise InputError(f"{path}: a truncated or damaged {what} file (a zip archive without its end)")
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise InputError(f"{path}: not a {what} file (not written by torch.save; it starts with {head!r})")


def safe_load(path: Path, *, what: str, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """torch.load with weights_only=True: tensors, numbers, strings, lists and dicts only.

    A pickle that asks for anything else is refused before any of it runs, and so is an
    archive that declares more than its file could hold. mmap=True maps the tensors instead
    of reading them (a cheap look at a large checkpoint)."""
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    check_archive(path, what=what)
    check_format(path, what=what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: refused, not a plain-data {what} ({unpickling_reason(exc)})") from None
    except MemoryError:
        raise  # a checkpoint too large for this machine is not a damaged one
    except Exception as exc:
        # A damaged legacy pickle fails inside torch's unpickler as KeyError, IndexError,
        # ValueError, struct.error...: whatever it is, the file is not a readable checkpoint.
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
        known = isinstance(exc, (RuntimeError, EOFError, OSError, zipfile.BadZipFile))
        reason = first if first and known else f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if isinstance(exc, EOFError) or "unexpected EOF" in first:  # a legacy pickle cut short
            raise InputError(f"{path}: a truncated {what} file ({reason[:200]})") from None
        raise InputError(f"{path}: not a readable {what} ({reason[:200]})") from None
