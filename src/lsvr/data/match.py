"""Does a prepared dataset fit a model? The fields that change what the model sees,
compared one by one (lsvr.preprocess.Preprocess.differences), each difference named with
both values and the fix.

Used where a dataset meets a checkpoint (eval, resume) and where two datasets meet
(train and val). Normalisation is the checkpoint's own (its mean image or channel
statistics travel with it), so it is compared only where a run continues.
"""

from __future__ import annotations

from pathlib import Path

from lsvr.errors import InputError
from lsvr.preprocess import Preprocess

FIELDS = ("classes", "size", "channels", "resize")  # what a prepared set's images are


def differences(expected: Preprocess, found: Preprocess, *, names: tuple[str, str],
                fields: tuple[str, ...] = FIELDS) -> list[str]:  # fmt: skip
    """One phrase per differing field: `resize: checkpoint 'center', dataset 'squash' (prepare with
    --resize center)`. names: what `expected` and `found` are, in that order. A field that one
    side does not record (a checkpoint older than the field) is not compared."""
    return expected.differences(found, names=names, fields=fields)


def require_match(expected: Preprocess, found: Preprocess, *, where: Path | str, names: tuple[str, str],
                  fields: tuple[str, ...] = FIELDS) -> None:  # fmt: skip
    """InputError naming `where` and every differing field, or nothing."""
    problems = differences(expected, found, names=names, fields=fields)
    if problems:
        raise InputError(f"{where}: does not match the {names[0]}: " + "; ".join(problems))
