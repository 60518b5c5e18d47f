"""Loading torch files safely: weights_only=True always, refusals as one-line InputErrors."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lsvr.errors import InputError


def unpickling_reason(exc: Exception) -> str:
    """The one line of torch's long weights_only refusal that names what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.split(" Please use")[0].replace("WeightsUnpickler error: ", "")
    return lines[0] if lines else "unsafe content"


def safe_load(path: Path, *, what: str, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """torch.load with weights_only=True: tensors, numbers, strings, lists and dicts only.

    A pickle that asks for anything else is refused before any of it runs. mmap=True maps
    the tensors instead of reading them (a cheap look at a large checkpoint)."""
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: refused, not a plain-data {what} ({unpickling_reason(exc)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable {what} ({first})") from None
