"""Every `sh` block of README.md and docs/*.md runs, as a user would type it, through Sybil:
with bash (`set -euo pipefail`), in order, in one fresh working folder per document that holds
stand-in data and an `lsvr` that runs scaled down (tests/doc_folder.py, tests/doc_shim.py).
A block under `<!-- skip: next "reason" -->` is reported skipped with its reason here and
parsed instead by tests/test_doc_commands_parsed.py.

    pytest -q tests/test_doc_commands.py            # every document
    pytest -q tests/test_doc_commands.py -k README  # one document (its blocks build on each other)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from sybil import Example
from tests.doc_blocks import is_skip, name, read_documents
from tests.doc_folder import open_folder, substituted, write_stand_ins

pytestmark = pytest.mark.slow  # every block starts processes
BLOCK_TIMEOUT_S = 280  # under pytest's own 300 s: a block past it is killed, and its output shown
TAIL = 3000  # characters of stdout and of stderr a failure shows


def tail(text: str) -> str:
    return text if len(text) <= TAIL else "..." + text[-TAIL:]


def run_block(example: Example) -> str | None:
    """Sybil's evaluator of an `sh` block: None when it exits 0, else what a reader needs to see."""
    source = substituted(str(example.parsed))
    process = subprocess.Popen(["bash", "-c", "set -euo pipefail\n" + source], cwd=example.namespace["folder"],
                               env=example.namespace["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = process.communicate(timeout=BLOCK_TIMEOUT_S)
        status = f"exit status {process.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # bash and every process it started
        out, err = process.communicate()
        status = f"killed after {BLOCK_TIMEOUT_S} s"
    if process.returncode == 0:
        return None
    return f"{name(example)}: {status}\n$ {source.strip()}\n--- stdout\n{tail(out)}\n--- stderr\n{tail(err)}"


DOCUMENTS = read_documents(run_block)
EXAMPLES = [e for d in DOCUMENTS for e in d.examples()]


class Folders:
    """One working folder per document, opened at its first block; a document's folder is
    removed when the next one opens (the documents run one after the other) and at the end."""

    def __init__(self, root: Path) -> None:
        self.root, self.stand_ins, self.opened = root, write_stand_ins(root / "stand-ins"), []

    def enter(self, example: Example) -> None:
        namespace = example.namespace
        if "folder" in namespace:
            return
        self.close()
        folder = self.root / Path(example.path).stem
        namespace["env"], namespace["folder"] = open_folder(self.stand_ins, folder), folder
        self.opened.append(folder)

    def close(self) -> None:
        for folder in self.opened:
            shutil.rmtree(folder, ignore_errors=True)
        self.opened.clear()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    made = Folders(tmp_path_factory.mktemp("doc-commands"))
    yield made
    made.close()


@pytest.mark.parametrize("example", EXAMPLES, ids=[name(e) + ("-skip" if is_skip(e) else "") for e in EXAMPLES])
def test_documented_command_block(example, folders):
    if is_skip(example):  # Sybil would skip the next block silently, passed, where no reason is given
        assert example.parsed[0] == "end" or example.parsed[1], f"{name(example)}: a skip directive with no reason"
    folders.enter(example)
    example.evaluate()  # the skip directives' Skipper raises SkipTest for the block after one
