"""Where `lsvr prepare` writes: OUT, built in OUT.partial beside it (after a check that the disk
has room), with OUT locked for the whole run.

Nothing a user owns is replaced or deleted. `--overwrite` replaces only what lsvr wrote: a
prepared dataset (lsvr's meta.json, and no file lsvr does not write there) or an unfinished
prepare (lsvr's plan.json or meta.json, or the first files of one killed before its plan was
written). OUT may not be the source, inside it or above it: replacing OUT would delete the
source, and an OUT inside a class-folder tree would become a class of the next prepare.

An OUT that is a symbolic link to a folder is written through: the dataset replaces the folder
it points to and the link itself is never renamed or removed. A dangling link, and a link at
OUT.partial or .OUT.replaced (names lsvr renames and deletes), are refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Protocol

import numpy as np

from lsvr.errors import InputError
from lsvr.folders import FolderLock, check_writable

DATASET_FILES = frozenset(
    ("images.npy", "images.bin", "offsets.npy", "labels.npy", "mean.npy", "shapes.npy", "rejects.tsv", "meta.json")
)
# what data/build.py writes into OUT.partial besides the dataset's files
BUILD_FILES = frozenset(("shards", "state.npz", "state.tmp.npz", "plan.json", "plan.json.tmp", "meta.json.tmp"))
PARTIAL_FILES = DATASET_FILES | BUILD_FILES
META_KEYS = ("format_version", "plan")  # of meta.json
PLAN_KEYS = ("encoding",)  # of plan.json


def resolve_out(out: Path) -> Path:
    """OUT as prepare writes it: a link to a folder resolved to that folder (the link is left
    as it is), `.` or `..` to the folder they name; refused when it is a dangling link or the
    current folder (or above it), which a prepare would rename away under the shell."""
    out = Path(out)
    if out.is_symlink():
        if not out.exists():
            raise InputError(
                f"{out}: a symbolic link to {os.readlink(out)}, which does not exist; lsvr writes through a link"
                " only to an existing folder: create it or choose another OUT"
            )
        out = out.resolve()
    elif out.name in ("", ".", ".."):  # names no folder of its own: OUT.partial needs one
        out = out.resolve()
    try:
        here = Path.cwd().resolve()
    except OSError:  # the shell's folder was deleted: OUT cannot be it
        return out
    if out.exists() and here.is_relative_to(out.resolve()):
        raise InputError(f"{out}: is the current folder or above it; give the dataset a folder of its own (OUT/name)")
    return out


def refuse_link(path: Path) -> None:
    """A symbolic link where lsvr renames or deletes its own folders is the user's: refused."""
    if path.is_symlink():
        raise InputError(
            f"{path}: a symbolic link, which lsvr never renames or deletes: move it away or choose another OUT"
        )


def check_split_parent(out: Path, splits: list[str]) -> None:
    """Refuse an OUT for several splits (OUT/train, OUT/test) that holds anything but those
    splits and lsvr's files beside them: a user's folder never gets lsvr's splits mixed in."""
    out = Path(out)
    if not out.is_dir():
        return
    allowed = {n for s in splits for n in (s, f"{s}.partial", f".{s}.lock", f".{s}.replaced")}
    stray = sorted(name for name in os.listdir(out) if name not in allowed)
    if stray:
        raise InputError(
            f"{out}: it holds {stray[0]}, which lsvr does not write there; the {' and '.join(splits)} splits go"
            " into a folder that is new, empty or holds only them: move it away or choose another OUT"
        )


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _replaced_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.replaced")


def lsvr_record(path: Path, *keys: str) -> dict | None:
    """The JSON object in `path` if it has the `keys` of the record lsvr writes there."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and all(key in record for key in keys) else None


def not_lsvr_reason(folder: Path, *, partial: bool) -> str | None:
    """None when `folder` is empty or lsvr wrote it (a prepared dataset, or with `partial` an
    unfinished prepare); else why it is not, for the refusal."""
    names = sorted(os.listdir(folder))
    allowed = PARTIAL_FILES if partial else DATASET_FILES
    stray = [name for name in names if name not in allowed]
    if stray:
        return f"it holds {stray[0]}, which lsvr does not write there"
    if not names or lsvr_record(folder / "meta.json", *META_KEYS):
        return None
    if partial and lsvr_record(folder / "plan.json", *PLAN_KEYS):
        return None
    shards = folder / "shards"
    if partial and set(names) <= {"plan.json.tmp", "shards"} and not (shards.is_dir() and any(shards.iterdir())):
        return None  # killed before its plan.json was in place: nothing was converted yet
    return "it has no meta.json written by lsvr" if not partial else "it has no plan.json or meta.json written by lsvr"


def check_apart(source: Path, out: Path, *, inside_ok: bool = False) -> None:
    """Refuse an OUT (or its OUT.partial) that is the source, inside it (unless `inside_ok`)
    or above it, symlinks resolved."""
    src = Path(source).resolve()
    for path in (out, partial_path(out)):
        dst = path.resolve()
        if dst == src:
            where = "is the source"
        elif src.is_relative_to(dst):
            where = f"holds the source {source}"
        elif dst.is_relative_to(src) and not inside_ok:
            where = f"is inside the source {source}"
        else:
            continue
        raise InputError(f"{path}: {where}; the output must be a folder apart from the source, even with --overwrite")


def check_location(out: Path) -> None:
    """Refuse, before any work, an OUT that cannot be written, or that is not a folder."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    check_writable(out, what="prepare output")
    if out.exists():  # OUT.partial and the lock are made beside it, and OUT is replaced by a rename
        check_writable(partial_path(out), what="prepare output")


def check_replaceable(out: Path) -> None:
    """Refuse to write OUT when it, or OUT.partial, holds anything lsvr did not write: even
    with --overwrite, only lsvr's own output is replaced."""
    for path in (partial_path(out), _replaced_path(out)):
        refuse_link(path)
    for path, partial in ((out, False), (partial_path(out), True)):
        if path.exists() and not path.is_dir():
            raise InputError(
                f"{path}: exists and is not a folder; lsvr never replaces it: move it or choose another OUT"
            )
        reason = not_lsvr_reason(path, partial=partial) if path.is_dir() else None
        if reason:
            raise InputError(
                f"{path}: {reason}; lsvr replaces only its own output, even with --overwrite:"
                " move it away or choose another OUT"
            )
    replaced = _replaced_path(out)
    if replaced.is_dir() and not_lsvr_reason(replaced, partial=False) is None:
        shutil.rmtree(replaced)  # a dataset replaced by a run killed before deleting it
    elif replaced.exists():
        raise InputError(f"{replaced}: not lsvr's; lsvr renames OUT there when replacing it: move it away")


def replace(out: Path, partial: Path) -> None:
    """Rename the finished OUT.partial to OUT. An existing OUT (lsvr's, checked again here) is
    first moved aside and deleted last, so a kill leaves either dataset whole, never half."""
    old = _replaced_path(out)
    if out.exists():
        check_replaceable(out)
        os.rename(out, old)
    os.rename(partial, out)
    if old.exists():
        shutil.rmtree(old)


def missing_folders(out: Path) -> list[Path]:
    """The folders above OUT that do not exist yet, deepest first: what `lock` creates."""
    missing = []
    folder = Path(out).parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove those of `folders` (deepest first) that are empty: a refused prepare leaves no
    folder behind that it created and did not fill."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a kept OUT.partial, another writer's files): it stays
            return


def lock(out: Path) -> FolderLock:
    """OUT's lock, taken: a hidden `.OUT.lock` beside OUT (which may not exist yet, and is
    replaced by a rename at the end), removed when released."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return FolderLock(out.parent / f".{out.name}.lock", folder=out, what="prepared dataset").acquire()


class Encoder(Protocol):
    """What check_disk needs of prepare's Converter (data/prepare.py, which imports this module)."""

    size: int
    channels: int
    encoding: str

    def convert(self, i: int) -> tuple[np.ndarray, bytes | np.ndarray] | Exception: ...


def check_disk(out: Path, convert: Encoder, remaining: int, n: int) -> None:
    """Refuse to start when the disk cannot hold what is left to write into OUT.partial: raw
    sizes are exact; JPEG sizes, when the raw size would not fit, are estimated from a sample.
    The margin, 3% and 1 MiB, covers the small files (labels, mean, shard records) and the
    file system's own blocks: a fixed 64 MiB refused a 40 KB dataset on a 20 MB disk."""
    if remaining == 0:
        return
    per_item = convert.size * convert.size * convert.channels
    free = shutil.disk_usage(out.parent).free
    if convert.encoding == "jpeg" and free < _with_margin(per_item * remaining):
        samples = np.linspace(0, n - 1, min(n, 16)).astype(int)
        sizes = [len(r[1]) for r in map(convert.convert, samples) if isinstance(r, tuple)]
        per_item = 1.25 * (np.mean(sizes) if sizes else per_item)
    need = _with_margin(per_item * remaining)
    if free < need:
        raise InputError(f"{out}: the dataset needs about {_amount(need)}, the disk has {_amount(free)} free")


def _with_margin(nbytes: float) -> int:
    return int(nbytes * 1.03) + (1 << 20)


def _amount(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"
