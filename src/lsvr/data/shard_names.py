"""WebDataset shard names from a brace pattern (`train-{000000..001023}.tar`), expanded as
WebDataset does (the braceexpand package), but counted first.

braceexpand builds each brace's names before it combines them: `x-{0..999999999}.tar` made a
billion strings and ran out of memory after 16 s. The count comes from the pattern's text
alone (the same grammar, walked without expanding), so a pattern naming too many shards is
refused at once; one naming a shard twice (`{0,0,0}`) would read it twice, and is refused too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from braceexpand import UnbalancedBracesError, alphabet, braceexpand

from lsvr.errors import InputError

MAX_SHARDS = 100_000  # the most shards a pattern may name (LAION-400M: 41,408; ImageNet-21k: a few thousand)
_INT_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.-?(\d+))?$")  # braceexpand's own grammar
_CHAR_RANGE = re.compile(r"^([A-Za-z])\.\.([A-Za-z])(?:\.\.-?(\d+))?$")


def shard_paths(pattern: str) -> list[Path]:
    """The shards a brace pattern names, in order: refused (InputError) when it names more than
    MAX_SHARDS, a shard twice, or shards that do not exist."""
    try:
        count = count_names(pattern)
    except UnbalancedBracesError:
        raise InputError(f"{pattern}: unbalanced braces in the shard pattern") from None
    if count > MAX_SHARDS:
        raise InputError(f"{pattern}: names {count:,} shards, over the {MAX_SHARDS:,} a pattern may name")
    shards = [Path(p) for p in braceexpand(pattern)]
    seen: set[str] = set()
    for path in shards:
        key = os.path.realpath(path)
        if key in seen:
            raise InputError(f"{path}: named twice by {pattern}; a pattern names each shard once")
        seen.add(key)
    missing = [p for p in shards if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no such shard ({len(missing)} of the {len(shards)} in {pattern} missing)")
    return shards


def count_names(pattern: str, escape: bool = True) -> int:
    """len(list(braceexpand(pattern))), from the pattern's text: braceexpand's parse_pattern,
    counting where it builds."""
    start = pos = depth = 0
    count = 1
    while pos < len(pattern):
        if escape and pattern[pos] == "\\":
            pos += 2
            continue
        if pattern[pos] == "{":
            if depth == 0 and pos > start:
                start = pos
            depth += 1
        elif pattern[pos] == "}":
            depth -= 1
            if depth == 0:
                expr = pattern[start + 1 : pos]
                found = _count_expression(expr, escape)
                count *= count_names(expr, escape) if found is None else found
                start = pos + 1
        pos += 1
    if depth != 0:
        raise UnbalancedBracesError(f"Unbalanced braces: '{pattern}'")
    return count


def _count_expression(expr: str, escape: bool) -> int | None:
    """How many names a brace's contents give: a range, or a comma list; None when it is
    neither (the braces are then kept as text)."""
    found = _INT_RANGE.match(expr)
    if found:
        first, last, step = int(found[1]), int(found[2]), int(found[3] or 1) or 1
        return len(range(first, last + 1, step) if first < last else range(first, last - 1, -step))
    found = _CHAR_RANGE.match(expr)
    if found:
        first, last, step = alphabet.index(found[1]), alphabet.index(found[2]), int(found[3] or 1) or 1
        if first < last:
            return len(alphabet[first : last + 1 : step])
        return len(alphabet[first : (last or -len(alphabet)) - 1 : -step])
    return _count_sequence(expr, escape)


def _count_sequence(seq: str, escape: bool) -> int | None:
    """braceexpand's parse_sequence, counting: the names of each comma-separated part, summed."""
    start = pos = depth = 0
    parts = []
    while pos < len(seq):
        if escape and seq[pos] == "\\":
            pos += 2
            continue
        if seq[pos] == "{":
            depth += 1
        elif seq[pos] == "}":
            depth -= 1
        elif seq[pos] == "," and depth == 0:
            parts.append(seq[start:pos])
            start = pos + 1
        pos += 1
    if depth != 0 or not parts:
        return None
    parts.append(seq[start:])
    return sum(count_names(part, escape) for part in parts)
