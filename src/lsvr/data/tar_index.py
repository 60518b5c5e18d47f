"""The index pass over a tar file: each member's name, where its bytes lie, and what is wrong
with it, read from the headers alone.

An uncompressed tar is indexed by seeking from header to header (tarfile skips the data); a
compressed one (.tar.gz, .tgz, .tar.bz2, .tar.xz) is decompressed once. An inner tar
(one of ILSVRC2012_img_train.tar's class tars, n01440764.tar and the like) is indexed in
place, through a window on the outer file, so its members' offsets are offsets in the outer
tar's stream: nothing is extracted.
A tar cut short or damaged keeps every member before the damage, and the damage becomes one
member with a problem: a reject line, never a crash. tarfile's list of every member read is
emptied as it goes (1.28 million TarInfo objects would take most of a GiB).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lsvr.data.image import looks_like_image
from lsvr.errors import InputError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SMALL = 1 << 16  # the most bytes of a member kept from the index pass (WebDataset labels)
_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, ValueError)
_SPECIAL = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO"}
PLACELESS = ("unsafe-name", "not-a-file")  # members with no place among the items: rejects listed last
CUT = ("truncated", "damaged-tar")  # where a tar ends early: what came after is lost


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


@dataclass
class Member:
    """A regular file in a tar: `name` (its path, "./" stripped; inside an inner tar
    "inner.tar:path"), its data at `offset` in the outer tar's (decompressed) stream, `size`
    bytes; `inner` the inner tar's name or ""; `problem` (kind, reason) makes it a reject;
    `data` its bytes when the index pass was asked to keep them."""

    name: str
    offset: int
    size: int
    inner: str = ""
    problem: tuple[str, str] | None = None
    data: bytes | None = None


class _Window:
    """The bytes [start, start + size) of a stream, as a file for tarfile: an inner tar."""

    def __init__(self, stream, start: int, size: int) -> None:
        self.stream, self.start, self.size, self.pos = stream, start, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        self.stream.seek(self.start + self.pos)
        data = self.stream.read(max(n, 0))
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.size + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos


def is_compressed(tar: tarfile.TarFile) -> bool:
    return not isinstance(tar.fileobj, io.BufferedReader)


def open_tar(path: Path) -> tarfile.TarFile:
    """A tar file opened for reading (compression detected), or InputError naming it."""
    try:
        return tarfile.open(path, "r:*")
    except _ERRORS as exc:  # tarfile lists each compression it tried, one a line: the last says most
        reason = str(exc).strip().splitlines()[-1]
        quoted = re.search(r"\('(.+)'\)", reason)
        raise InputError(f"{path}: not a readable tar file ({quoted.group(1) if quoted else reason})") from None


def index_tar(path: Path, *, inner: bool = False, keep: Callable[[str], bool] | None = None,
              digest: Callable[[str, bytes], bytes] | None = None,
              progress: Callable[[int], None] | None = None) -> tuple[list[Member], bool]:  # fmt: skip
    """Every regular file of the tar at path (and, with `inner`, of the tars it holds), in tar
    order, and whether it is compressed. keep(name): keep that member's bytes (up to SMALL),
    as digest(name, bytes) gives them: one member's at a time, so that what is kept of a
    million members is what digest keeps (a .tar.gz of 64 KB labels of zeros, each kept
    whole, would take a thousand times its size).
    progress(n): called with the bytes of the tar passed so far (uncompressed tars)."""
    with open_tar(path) as tar:
        compressed = is_compressed(tar)
        end = None if compressed else os.path.getsize(path)
        members = []
        for member in _walk(tar, tar.fileobj, 0, end, "", keep, progress):
            cut = member.problem is not None and member.problem[0] == "truncated"
            if inner and member.name.lower().endswith(".tar") and (member.problem is None or cut):
                # an inner tar the outer's end cuts: its members before the cut are kept
                found = list(_inner(tar.fileobj, member, end - member.offset if cut else member.size, keep))
                if not found and not cut:  # its class would vanish without a word (ImageFolder refuses it too)
                    raise InputError(f"{path}:{member.name}: an empty class tar (no members): its class would"
                                     " have no images; remove it from the tar, or extract the others")  # fmt: skip
            else:
                found = [member]
            for m in found:
                if digest is not None and m.data is not None:
                    m.data = digest(m.name, m.data)
                members.append(m)
        return members, compressed


def _inner(stream, holder: Member, size: int, keep) -> Iterator[Member]:
    """The members of an inner tar (its first `size` bytes, what the outer tar holds of it), by
    a window on the outer stream; an inner tar that does not open is one reject named after it."""
    try:
        tar = tarfile.open(fileobj=_Window(stream, holder.offset, size), mode="r:")  # noqa: SIM115 (closed below)
    except _ERRORS as exc:
        yield Member(holder.name, holder.offset, holder.size, problem=("damaged-tar", f"not a readable tar: {exc}"))
        return
    with tar:
        yield from _walk(tar, tar.fileobj, holder.offset, size, holder.name, keep, None)


def _walk(tar: tarfile.TarFile, stream, base: int, end: int | None, inner: str, keep,
          progress) -> Iterator[Member]:  # fmt: skip
    """tar's members as Members (offsets moved by base; end: the tar's length, None when
    unknown), ending with one damage Member when the tar is cut short or damaged."""
    prefix = f"{inner}:" if inner else ""
    last: Member | None = None
    while True:
        at = tar.offset
        try:
            info = tar.next()
        except _ERRORS as exc:
            if last is None or last.problem is None or last.problem[0] != "truncated":
                yield Member(f"{prefix}(byte {at})", base + at, 0, inner, ("damaged-tar", f"the tar is damaged: {exc}"))
            return
        tar.members.clear()
        if info is None:
            break
        if progress is not None:
            progress(tar.offset)
        member = _member(info, base, end, inner, prefix)
        if member is None:
            continue
        if keep is not None and member.problem is None and member.size <= SMALL and keep(member.name):
            member.data = _read_member(tar, info)
        last = member
        yield member
    if end is not None:  # tarfile ends quietly at a header it cannot read: past the last member
        tail = _tail(stream, tar.offset, end)
        if tail:
            yield Member(f"{prefix}(byte {tar.offset})", base + tar.offset, 0, inner, ("damaged-tar", tail))


def _member(info: tarfile.TarInfo, base: int, end: int | None, inner: str, prefix: str) -> Member | None:
    """A header as a Member; None for what a folder would not list (a plain directory, a
    hidden name). A directory named like an image, a link, a name that is absolute or climbs
    out with '..', and a device or FIFO are rejects."""
    name = info.name[2:] if info.name.startswith("./") else info.name
    name = name.rstrip("/")
    unsafe = name.startswith("/") or ".." in name.split("/")
    if not name or (not unsafe and any(part.startswith(".") for part in name.split("/"))):
        return None
    member = Member(prefix + name, base + info.offset_data, info.size, inner)
    if info.isdir():
        member.size = 0
        member.problem = ("directory", "is a directory") if looks_like_image(name) else None
        return member if member.problem else None
    if unsafe:  # nothing is ever extracted, but such a name has no class folder of its own to be in
        member.size = 0
        member.problem = ("unsafe-name", "an absolute name or one with a '..' part, which points outside the tar")
        return member
    if info.issym() or info.islnk():
        member.size = 0
        member.problem = ("unreadable", f"a link in the tar (to {info.linkname}); links in a tar are not followed")
        return member
    if not info.isreg():
        member.size = 0
        kind = _SPECIAL.get(info.type, f"a member of type {info.type!r}")
        member.problem = ("not-a-file", f"not a regular file: {kind} in the tar")
        return member
    if end is not None and info.offset_data + info.size > end:
        missing = info.offset_data + info.size - end
        member.problem = ("truncated", f"the tar ends {missing} of its {info.size} bytes short")
    return member


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes | None:
    try:
        return tar.extractfile(info).read()
    except _ERRORS:
        return None


def _tail(stream, offset: int, end: int) -> str:
    """Why the bytes after a tar's last member are damage ('' when they are its end blocks);
    stream: the tar's own (a window for an inner tar)."""
    left = end - offset
    if left == 0:  # every tar ends with zero blocks: one without them was cut at a header
        return f"the tar ends at byte {end} without its end-of-archive blocks: it was cut short there"
    if left < 0:
        return ""
    stream.seek(offset)
    block = stream.read(min(left, 1 << 20))
    if left <= 1 << 20 and not block.strip(b"\0"):
        return ""
    return f"the tar is damaged: {left} bytes after its last readable member are not a tar member"
