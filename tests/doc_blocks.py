"""The command blocks of README.md and docs/*.md, as Sybil reads them: a fenced block whose
info string is `sh` holds commands a user types; `<!-- skip: next "reason" -->` on the line
before one keeps it from running (tests/test_doc_commands.py runs the others) and has it
parsed instead (tests/test_doc_commands_parsed.py). The shell-word helpers both use are here."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

from sybil import Document, Example
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = "sh"
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def document_paths() -> list[Path]:
    """README.md, then docs/*.md in name order: the order the runner walks them."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def not_run(example: Example) -> None:
    raise AssertionError(f"{example.path}:{example.line}: read for parsing only, not run")


def read_documents(evaluator: Callable[[Example], str | None] = not_run) -> list[Document]:
    """Each document with its `sh` blocks (evaluated by evaluator) and its skip directives."""
    return [Document.parse(str(p), CodeBlockParser(LANGUAGE, evaluator), SkipParser()) for p in document_paths()]


def name(example: Example) -> str:
    """README.md:42, docs/CLUSTERS.md:7: the block's file and the line of its opening fence."""
    return f"{Path(example.path).relative_to(ROOT)}:{example.line}"


def is_skip(example: Example) -> bool:
    return isinstance(example.region.evaluator, Skipper)


def skipped_blocks(document: Document) -> Iterator[tuple[Example, str | None]]:
    """Each `sh` block a skip directive keeps from running, with the directive's reason (a
    Python expression, as Sybil reads it; None where the directive gives none)."""
    pending, inside = None, None
    for example in document.examples():
        if is_skip(example):
            action, reason = example.parsed
            if action == "next":
                pending = (reason,)
            elif action == "start":
                inside = (reason,)
            else:
                inside = None
            continue
        if pending or inside:
            yield example, (pending or inside)[0]
        pending = None


def fence_infos(path: Path) -> Iterator[tuple[int, str]]:
    """(line of the opening fence, info string) of every fenced block in the file, through
    Sybil's own fence lexer."""
    document = Document(path.read_text(encoding="utf-8"), str(path))
    lexer = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<info>[^\n]*)$\n", re.MULTILINE))
    for region in lexer(document):
        yield document.text.count("\n", 0, region.start) + 1, region.lexemes["info"].strip()


def logical_lines(source: str) -> list[str]:
    """The block's commands: continuation lines joined, blank and comment-only lines dropped."""
    joined = re.sub(r"\\\n", " ", source)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def split_command(line: str) -> tuple[dict[str, str], list[str]]:
    """A command line's leading NAME=value assignments and its words (comments dropped)."""
    words = shlex.split(line, comments=True)
    env = {}
    while words and ASSIGNMENT.match(words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words
