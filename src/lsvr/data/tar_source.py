"""Sources read from tar files in place, never unpacked: ILSVRC2012's official tars, tars of
class folders, and WebDataset shards.

Layouts (--source-format auto picks by content; `imagenet` or `webdataset` forces one):
- nested: an outer tar of inner class tars (ILSVRC2012_img_train.tar: one per wnid, n01440764.tar and on);
  the class is the inner tar's name without .tar. A folder of such class tars is the same.
- class folders in a tar: the class is a member's first folder (a tarred ImageFolder).
- flat: images labelled by --labels (ILSVRC2012_img_val.tar with the devkit), by file stem.
- webdataset: members grouped by key (the path up to the first dot of the file name), each
  sample an image member and a label member (.cls, .txt or .json), shards in the order given
  (a brace pattern, `train-{000000..001023}.tar`, expanded as WebDataset does), samples in tar order.
The ILSVRC layouts list their items as the same images in folders would be (classes in sorted
order, then sorted paths), so a tar and its unpacked folders prepare to the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lsvr.data.image import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, DecodeError, decode_bytes, too_large
from lsvr.data.labels import label_items, read_label_file
from lsvr.data.shard_names import shard_paths
from lsvr.data.sources import Source
from lsvr.data.tar_index import CUT, PLACELESS, TAR_SUFFIXES, Member, index_tar, is_tar_name
from lsvr.data.tar_reader import MemberReader
from lsvr.errors import InputError
from lsvr.progress import progress_bar

SOURCE_FORMATS = ("auto", "imagenet", "webdataset")
LABEL_EXTS = ("cls", "txt", "json")  # a WebDataset sample's label member, in order of preference
IMAGE_EXTS = tuple(s[1:] for s in IMAGE_SUFFIXES)
LABEL_BYTES = 256  # the longest label kept (a class index, a class name; ImageNet's are 9 characters)


class TarSource(Source):
    """Items that are tar members: item i is `size[i]` bytes at `offset[i]` of volume `volume[i]`
    (its problem, if the index found one, in `problems`)."""

    def __init__(self, root: Path, names: list[str], labels: np.ndarray, classes: list[str], *,
                 volumes: list[Path], compressed: list[bool], members: list[tuple[int, Member]]) -> None:  # fmt: skip
        super().__init__(root=root, names=names, labels=labels, classes=classes)
        self.volume = np.array([v for v, _ in members], np.int32)
        self.offset = np.array([m.offset for _, m in members], np.int64)
        self.size = np.array([m.size for _, m in members], np.int64)
        self.problems = {i: m.problem for i, (_, m) in enumerate(members) if m.problem is not None}
        items = [(self.offset[self.volume == v], self.size[self.volume == v]) for v in range(len(volumes))]
        self.reader = MemberReader(volumes, compressed, items)

    def decode(self, i: int, min_side: int = 0, *, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
        problem = self.problems.get(i)
        if problem is not None:
            raise DecodeError(problem[1], problem[0])
        size = int(self.size[i])
        if size > max_bytes:  # by its header: never read
            raise too_large(size, max_bytes, "member")
        try:
            data = self.reader.read(int(self.volume[i]), int(self.offset[i]), size)
        except (OSError, EOFError, ValueError) as exc:  # a compressed stream cut short, an I/O error
            raise DecodeError(f"unreadable in the tar: {exc}", "truncated") from None
        if len(data) < size:
            raise DecodeError(f"the tar ends {size - len(data)} of its {size} bytes short", "truncated")
        if not data:
            raise DecodeError("empty file", "empty")
        return decode_bytes(data, min_side)


def looks_like_tar_source(path_text: str) -> bool:
    """A tar file, a brace pattern of shards, or a folder holding tar files and no class folders."""
    path = Path(path_text)
    if "{" in path_text and not path.exists():
        return True
    if path.is_file():
        return is_tar_name(path.name)
    if not path.is_dir() or not _tars_in(path):
        return False
    return not any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path))


def open_tar_source(path_text: str, *, source_format: str = "auto", classes: list[str] | None = None,
                    labels: Path | None = None, devkit_meta: Path | None = None,
                    progress: bool = False) -> Source:  # fmt: skip
    """The source in a tar, a folder of tars or a brace pattern of shards (layouts: above)."""
    if source_format not in SOURCE_FORMATS:
        raise InputError(f"--source-format must be one of {', '.join(SOURCE_FORMATS)}")
    root, shards = _shards(path_text)
    single = len(shards) == 1 and Path(path_text).is_file()
    indexed, compressed = _index(shards, inner=single and source_format != "webdataset", progress=progress)
    parts = {"volumes": shards, "compressed": compressed}
    # a member with no place among the items (an unsafe name, a device) is a reject, listed last
    outcasts = [(v, m) for v, m in indexed if m.problem is not None and m.problem[0] in PLACELESS]
    placed = [(v, m) for v, m in indexed if m.problem is None or m.problem[0] not in PLACELESS]
    wds = source_format == "webdataset" or (
        source_format == "auto" and labels is None and any(_is_webdataset(m) for _, m in placed)
    )
    class_of = _class_of(shards, single=single, wds=wds)
    if wds:
        if labels is not None:
            raise InputError(f"{root}: WebDataset shards carry their labels; --labels is for a tar of images")
        items = _webdataset(root, parts, placed, classes)
    elif labels is not None:
        items = _flat(root, parts, placed, labels, classes, devkit_meta)
    elif not single:  # a folder of class tars: the class is each tar's name
        items = _classes(root, placed, lambda v, m: (class_of(v, m), m.name), classes)
    elif any(m.inner for _, m in placed):  # the nested ILSVRC train tar
        inner = [(v, m) for v, m in placed if m.inner]
        items = _classes(root, inner, lambda v, m: (class_of(v, m), m.name.split(":", 1)[1]), classes)
    else:
        nested = [(v, m) for v, m in placed if "/" in m.name]
        if not nested:
            raise InputError(f"{root}: a tar of images without class folders or inner class tars: give their"
                             " labels with --labels FILE")  # fmt: skip
        items = _classes(root, nested, lambda v, m: (class_of(v, m), m.name.split("/", 1)[1]), classes)
    members, labels_, classes = items
    members = members + outcasts
    labels_ = np.concatenate([labels_, np.full(len(outcasts), -1, np.int64)])
    names = [_named(parts, v, m) for v, m in members]
    source = TarSource(root, names, labels_, classes, **parts, members=members)
    source.lost = _lost(parts, indexed, class_of, members, labels_, classes)
    return source


def _class_of(shards: list[Path], *, single: bool, wds: bool) -> Callable[[int, Member], str | None]:
    """class_of(v, m): the class a member of shard v belongs to by its place (None in WebDataset)."""

    def class_of(v: int, m: Member) -> str | None:
        if wds:
            return None
        if m.inner:  # the nested ILSVRC train tar
            return _stem(m.inner)
        if not single:  # a folder of class tars
            return _stem(shards[v].name)
        return m.name.split("/", 1)[0] if "/" in m.name else None

    return class_of


def _lost(parts: dict, indexed: list[tuple[int, Member]], class_of, members: list[tuple[int, Member]],
          labels: np.ndarray, classes: list[str]) -> str | None:  # fmt: skip
    """What a tar cut short (or damaged) lost, in one line: where it ends, which class it cut and
    what that class keeps; None for whole tars. A tar says nothing of the members past its end,
    so their number, and the classes whose members all came after it, are unknown."""
    cut = [(v, m) for v, m in indexed if m.problem is not None and m.problem[0] in CUT]
    if not cut:
        return None
    v, m = cut[0]
    volume = parts["volumes"][v].name
    text = f"{_named(parts, v, m)}: {m.problem[1]}; the rest of {m.inner or volume} is lost"
    if m.inner and m is [k for w, k in indexed if w == v][-1]:  # the outer tar's last member: it may be cut too
        text += f", with the classes after it in {volume}, if any"
    cls = class_of(v, m)
    if cls is not None:
        kept = sum(1 for (w, k), label in zip(members, labels.tolist(), strict=True)
                   if label >= 0 and k.problem is None and class_of(w, k) == cls)  # fmt: skip
        text += f": class {cls} keeps {kept} images before it ({len(classes)} classes found)"
    more = len(cut) - 1
    return text + (f"; {more} more place(s) cut or damaged (rejects.tsv names each)" if more else "")


# ---------------------------------------------------------------- finding and indexing shards


def _tars_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_tar_name(p.name) and not p.name.startswith("."))


def _shards(path_text: str) -> tuple[Path, list[Path]]:
    """(the source's root, its tar files in order)."""
    path = Path(path_text)
    if path.is_dir():
        shards = _tars_in(path)
        if not shards:
            raise InputError(f"{path}: no tar files in the folder")
        return path, shards
    if path.exists():
        return path, [path]
    return path, shard_paths(path_text)


def _index(shards: list[Path], *, inner: bool, progress: bool) -> tuple[list[tuple[int, Member]], list[bool]]:
    """Every member of every shard, as (shard number, Member), and whether each shard is
    compressed; a progress bar in bytes."""
    total = sum(p.stat().st_size for p in shards)
    bar = progress_bar(total=total, unit="B", desc="index", enabled=progress, every_s=30.0)
    done, found, compressed = 0, [], []
    try:
        for v, shard in enumerate(shards):
            members, packed = index_tar(shard, inner=inner, keep=_is_label_name, digest=_label_text,
                                        progress=lambda at, base=done: bar.update(base + at - bar.n))  # fmt: skip
            found.extend((v, m) for m in members)
            compressed.append(packed)
            done += shard.stat().st_size
            bar.update(done - bar.n)
    finally:
        bar.close()
    return found, compressed


def _stem(name: str) -> str:
    """A class tar's class: its name without .tar (or .tar.gz and the like)."""
    return next((name[: -len(s)] for s in TAR_SUFFIXES if name.lower().endswith(s)), name)


# ---------------------------------------------------------------- the ILSVRC layouts


def _named(parts: dict, v: int, m: Member) -> str:
    """A member as rejects.tsv names it: outer.tar:inner.tar:member, shard.tar:member."""
    return f"{parts['volumes'][v].name}:{m.name}"


Items = tuple[list[tuple[int, Member]], np.ndarray, list[str]]  # (the items' members in order, labels, classes)


def _classes(root: Path, members: list[tuple[int, Member]], split: Callable[[int, Member], tuple[str, str]],
             classes: list[str] | None) -> Items:  # fmt: skip
    """Items with a class each (split(v, m): (class, path within it)), in folder order."""
    keyed = sorted((split(v, m), k) for k, (v, m) in enumerate(members))
    found = sorted({cls for (cls, _), _ in keyed})
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise InputError(f"{root}: classes not among the given classes: {', '.join(unknown[:5])}")
    classes = classes or found
    if not keyed:
        raise InputError(f"{root}: no images found in the tar")
    index = {name: i for i, name in enumerate(classes)}
    order = [members[k] for _, k in keyed]
    labels = np.array([index[cls] for (cls, _), _ in keyed], np.int64)
    return order, labels, classes


def _flat(root: Path, parts: dict, members: list[tuple[int, Member]], label_file: Path,
          classes: list[str] | None, devkit_meta: Path | None) -> Items:  # fmt: skip
    """Images labelled by a label file, matched by file stem (ILSVRC2012_img_val.tar)."""
    by_stem = read_label_file(label_file, classes, devkit_meta)
    order = sorted(members, key=lambda vm: (vm[0], vm[1].name))
    paths = [m.name.rsplit("/", 1)[-1] for _, m in order]
    labels, classes = label_items(paths, by_stem, classes, root=root, label_file=label_file)
    return order, labels, classes


# ---------------------------------------------------------------- WebDataset


def _is_label_name(name: str) -> bool:
    return _split_key(name)[1] in LABEL_EXTS


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's (key, extension): the path up to the first dot of the file name, the rest."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _label_text(name: str, data: bytes) -> bytes:
    """What is kept of a label member from the index pass: its label alone, at most LABEL_BYTES
    (a .json's label field; b"" for none: a bad-label reject)."""
    try:
        text = data.decode("utf-8").strip()
        if _split_key(name)[1] == "json":
            value = json.loads(text)
            if isinstance(value, dict):
                value = next(value[k] for k in ("label", "cls", "class") if k in value)
            text = json.dumps(value)
    except (UnicodeDecodeError, ValueError, StopIteration, TypeError):
        return b""
    kept = text.encode("utf-8")
    return kept if len(kept) <= LABEL_BYTES else b""


def _is_webdataset(member: Member) -> bool:
    return member.data is not None and _is_label_name(member.name)


def _webdataset(root: Path, parts: dict, members: list[tuple[int, Member]], classes: list[str] | None) -> Items:
    """One item per sample (key) of each shard, in tar order; a sample without an image or a
    readable label is a reject."""
    samples: dict[tuple[int, str], dict[str, Member]] = {}
    for v, m in members:
        key, ext = _split_key(m.name)
        samples.setdefault((v, key), {}).setdefault(ext, m)
    items, values = [], []
    for (v, _), found in samples.items():
        image = next((found[e] for e in IMAGE_EXTS if e in found), None)
        label = next((found[e] for e in LABEL_EXTS if e in found), None)
        value, problem = _label_value(label)
        if image is None:
            named = next(iter(found.values()))
            image, problem = Member(named.name, named.offset, 0), ("no-image", "a sample without an image member")
        items.append((v, Member(image.name, image.offset, image.size, problem=image.problem or problem)))
        values.append(value)
    if not items:
        raise InputError(f"{root}: no samples in the shards")
    labels, classes, beyond = _class_indices(values, classes, [_named(parts, v, m) for v, m in items])
    for k in beyond:
        v, m = items[k]
        items[k] = (v, Member(m.name, m.offset, m.size, problem=("bad-label", beyond[k])))
    return items, labels, classes


def _label_value(member: Member | None) -> tuple[int | str | None, tuple[str, str] | None]:
    """A label member's class: an index (.cls, a number) or a name; else why not."""
    if member is None:
        return None, ("no-label", "a sample without a .cls, .txt or .json label member")
    ext = _split_key(member.name)[1]
    try:
        text = (member.data or b"").decode("utf-8").strip()
        value = json.loads(text) if ext == "json" else text
        if isinstance(value, dict):
            value = next(value[k] for k in ("label", "cls", "class") if k in value)
        if isinstance(value, str) and value.isascii() and value.isdigit():  # not '٣', which isdigit() takes
            value = int(value)
    except (UnicodeDecodeError, ValueError, StopIteration, TypeError):
        value = None
    index_or_name = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if not index_or_name and not (ext != "cls" and isinstance(value, str) and value):
        return None, ("bad-label", f"{member.name}: not a class index or name")
    return value, None


def _class_indices(values: list, classes: list[str] | None,
                   names: list[str]) -> tuple[np.ndarray, list[str], dict[int, str]]:  # fmt: skip
    """Each sample's class index (-1 for a reject's), the class list, and the samples whose label
    is refused (k: why). The classes: the given ones, else sorted names for names, 0..the largest
    index for indices; an index at or above the number of samples is refused then (one hostile
    .cls of 99999999999 would size a class list of that many; 50000 in a small set made 50,001
    classes, nearly all empty): sparse indices need their class list, --classes."""
    given = [v for v in values if v is not None]
    kinds = {type(v) for v in given}
    if len(kinds) > 1:
        raise InputError(f"{names[0].split(':')[0]}: the labels mix class indices and class names")
    beyond: dict[int, str] = {}
    if classes is None and kinds == {int}:
        beyond = {k: f"class index {v} is not below the {len(values)} samples: without --classes the classes are"
                     " 0 .. the largest index, and most of these would hold no sample; give the class list with"
                     " --classes FILE" for k, v in enumerate(values) if v is not None and v >= len(values)}  # fmt: skip
    if classes is None:  # names: sorted; indices: 0 .. the largest
        indices = [v for k, v in enumerate(values) if v is not None and k not in beyond]
        classes = sorted(set(given)) if kinds == {str} else [str(k) for k in range(max(indices, default=-1) + 1)]
    index = {name: i for i, name in enumerate(classes)}
    labels = np.full(len(values), -1, np.int64)
    for k, value in enumerate(values):
        if value is None or k in beyond:
            continue
        label = index.get(value, -1) if isinstance(value, str) else (value if value < len(classes) else -1)
        if label < 0:
            raise InputError(f"{names[k]}: label {value!r} is not among the {len(classes)} classes")
        labels[k] = label
    return labels, classes, beyond
