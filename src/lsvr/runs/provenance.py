"""What made a file: lsvr's version, the source commit, torch's version."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from lsvr import __version__


def git_commit() -> str:
    """The source tree's commit, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, str]:
    return {"lsvr_version": __version__, "commit": git_commit(), "torch": str(torch.__version__)}
