"""Does a prepared dataset fit a model? The fields that change what the model sees,
compared one by one, each difference named with both values and the fix.

Used where a dataset meets a checkpoint (eval, resume) and where two datasets meet
(train and val). Normalisation is the checkpoint's own (its mean image or channel
statistics travel with it), so it is compared only where a run continues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsvr.errors import InputError

FIELDS = ("classes", "size", "channels", "resize")
FIXES = {"size": "--size {}", "channels": "--channels {}", "resize": "--resize {}"}


def dataset_record(ds: Any) -> dict[str, Any]:
    """What a PreparedDataset says of its images (lsvr.data.dataset)."""
    return {"classes": list(ds.classes), "size": int(ds.shape[0]), "channels": int(ds.shape[2]),
            "resize": ds.meta.get("resize")}  # fmt: skip


def checkpoint_record(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint says of the images its model was trained on."""
    pre = state.get("preprocess", {})
    return {"classes": list(state.get("classes", [])), "size": pre.get("size"), "channels": pre.get("channels"),
            "resize": pre.get("resize")}  # fmt: skip


def differences(expected: dict[str, Any], found: dict[str, Any], *, names: tuple[str, str],
                fields: tuple[str, ...] = FIELDS) -> list[str]:  # fmt: skip
    """One phrase per differing field: `resize: checkpoint 'center', dataset 'squash' (prepare with
    --resize center)`. names: what `expected` and `found` are, in that order. A field that one
    side does not record (a checkpoint older than the field) is not compared."""
    out = []
    for field in fields:
        want, got = expected.get(field), found.get(field)
        if want is None or got is None or want == got:
            continue
        if field == "classes":
            out.append(_classes(want, got, names))
            continue
        fix = f" (prepare with {FIXES[field].format(want)})" if field in FIXES else ""
        out.append(f"{field}: {names[0]} {want!r}, {names[1]} {got!r}{fix}")
    return out


def _classes(want: list[str], got: list[str], names: tuple[str, str]) -> str:
    if sorted(want) == sorted(got):
        i = next(i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b)
        return (f"classes: the same {len(want)} names in another order (at index {i}: {names[0]} {want[i]!r},"
                f" {names[1]} {got[i]!r}; prepare with --classes-from)")  # fmt: skip
    only_a = [c for c in want if c not in set(got)][:3]
    only_b = [c for c in got if c not in set(want)][:3]
    parts = [f"{len(want)} in the {names[0]}, {len(got)} in the {names[1]}"]
    if only_a:
        parts.append(f"only in the {names[0]}: {', '.join(map(repr, only_a))}")
    if only_b:
        parts.append(f"only in the {names[1]}: {', '.join(map(repr, only_b))}")
    return "classes: " + "; ".join(parts)


def require_match(expected: dict[str, Any], found: dict[str, Any], *, where: Path | str, names: tuple[str, str],
                  fields: tuple[str, ...] = FIELDS) -> None:  # fmt: skip
    """InputError naming `where` and every differing field, or nothing."""
    problems = differences(expected, found, names=names, fields=fields)
    if problems:
        raise InputError(f"{where}: does not match the {names[0]}: " + "; ".join(problems))
