"""The README is a guide: at most 200 lines, its first screen links to the three paths users
walk most (own photos, ResNet-50 on 8 GPUs, SLURM), and every relative link of README.md and
docs/*.md reaches a file that exists and, with a #fragment, a heading of that file."""

from __future__ import annotations

import re
from pathlib import Path

from tests.doc_blocks import ROOT, document_paths

README = ROOT / "README.md"
MAX_LINES = 200
FIRST_SCREEN = 25  # lines
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, inside = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def test_readme_is_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines: the manual belongs in docs/"


def test_first_screen_links_to_the_three_paths():
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN])
    targets = {m.group(1) for m in LINK.finditer(first)}
    heads = anchors(README)
    for anchor in ("#your-own-photos-to-a-trained-model", "#on-8-gpus", "#on-slurm"):
        assert anchor in targets, f"README.md's first {FIRST_SCREEN} lines do not link to {anchor}"
        assert anchor[1:] in heads, f"README.md has no heading for {anchor}"


def test_every_relative_link_resolves():
    broken = []
    for path in document_paths():
        for match in LINK.finditer(path.read_text(encoding="utf-8")):
            target = match.group(1)
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, fragment = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)}: {target}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)
