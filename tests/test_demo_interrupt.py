"""`make demo` (scripts/demo.sh) stopped by Ctrl-C: `lsvr train` saves and exits 0 on SIGINT, so
the demo itself must say it stopped, print no result line and exit non-zero. A stand-in `lsvr`
on PATH trains by waiting for the signal (as the real one, it then exits 0) and evaluates to a
fixed top-1: the script's own logic is what runs. The demo starts with SIGINT
at its default, as from a terminal, whatever this process inherited."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import ROOT, wait_for

STAND_IN = """#!/usr/bin/env bash
case "$1" in
  train) mkdir -p "$DEMO"; trap 'echo "stand-in train: stopped, saved" >&2; exit 0' INT; : > "$MARK"
    while :; do sleep 0.05; done ;;
  eval) echo '{"top1": 12.5}' ;;
esac
"""


@pytest.mark.slow  # about 1 s: the demo script run with a stand-in lsvr, interrupted in training
def test_ctrl_c_in_training_ends_the_demo_without_a_result(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lsvr").write_text(STAND_IN)
    (bin_dir / "lsvr").chmod(0o755)
    env = {**os.environ, "DEMO": str(tmp_path / "run"), "MARK": str(tmp_path / "training"),
           "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin"}  # fmt: skip
    # SIGINT as a terminal leaves it: pytest started in the background by a non-interactive shell
    # (`make test &`) ignores SIGINT, its children inherit that, and bash cannot trap an ignored signal
    demo = subprocess.Popen(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        wait_for(lambda: (tmp_path / "training").exists() or demo.poll() is not None, 60, "the demo to train")
        assert demo.poll() is None, demo.communicate()
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 130, (out, err)
    assert "stand-in train: stopped, saved" in err  # the run did stop as the real one does, with status 0
    assert err.strip().splitlines()[-1] == f"demo: stopped (Ctrl-C): no result; what was done is in {tmp_path / 'run'}"
    assert "top-1" not in out and "top-1" not in err, (out, err)
