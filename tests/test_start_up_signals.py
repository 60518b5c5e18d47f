"""SIGTERM during `lsvr train`'s start-up: noted by the handler, acted on at safe points, and
handed to the loop's own handler with no gap (issue 28, item 2). A handler that raised landed
inside `import torch` and broke it, or was swallowed and the run trained on."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support import CONFIG, ENV, sets, wait_for

from lsvr.runs import checkpoints
from lsvr.signals import Preemption, StartUpStop, check_start_up, start_up_stop

STOP_LINE = "lsvr train: stopped during start-up; nothing to save"


def _deliver(signum: int) -> None:
    signal.raise_signal(signum)
    for _ in range(3):  # Python runs the handler between bytecodes: give it a few
        time.sleep(0)


def test_a_start_up_signal_is_noted_and_acted_on_at_the_next_safe_point():
    before = signal.getsignal(signal.SIGTERM)
    with start_up_stop():
        _deliver(signal.SIGTERM)  # nothing raised here, wherever it lands (an import, say)
        with pytest.raises(StartUpStop):
            check_start_up()
    assert signal.getsignal(signal.SIGTERM) is before
    check_start_up()  # the note went with the start-up: a later one starts clean


def test_the_loop_takes_over_a_signal_noted_before_its_handler():
    with start_up_stop():
        _deliver(signal.SIGUSR1)  # between the last safe point and Preemption's start
        with pytest.raises(StartUpStop), Preemption():
            pytest.fail("entered: the noted signal would be lost and the run train on")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # nothing trained: the start-up ends
    with start_up_stop():
        with Preemption() as preemption:  # from here the loop's handler answers: a step, then a checkpoint
            _deliver(signal.SIGTERM)
        assert preemption.requested == "SIGTERM"
        check_start_up()  # not also a start-up stop


def _catches_sigterm(pid: int) -> bool:
    """SigCgt in /proc: the process has a SIGTERM handler (lsvr's code runs)."""
    status = Path(f"/proc/{pid}/status")
    text = status.read_text() if status.exists() else ""
    mask = next((line.split()[1] for line in text.splitlines() if line.startswith("SigCgt")), "0")
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.5, 0.8, 1.1, 1.5])
def test_sigterm_anywhere_in_the_start_up_exits_143_in_one_line_or_saves(tiny_data, tmp_path, delay):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lsvr", "train", str(CONFIG), "--out", str(out),
               *sets(tiny_data, **{"train.epochs": 20, "checkpoint.every_steps": 1000})]  # fmt: skip
    run = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # timed from the handler's start: before it the interpreter has not reached lsvr's code
        wait_for(lambda: _catches_sigterm(run.pid), 60, "lsvr's SIGTERM handler")
        time.sleep(delay)
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=240)
    assert "Traceback" not in err, err[-3000:]
    if run.returncode == 143:  # before training: one line, nothing kept
        assert err.strip().splitlines() == [STOP_LINE], err[-3000:]
        assert checkpoints.find(out) is None and not out.exists()
    else:  # the loop's handler had it: stopped after a step, with a checkpoint (100 steps were asked)
        assert run.returncode == 0, err[-3000:]
        assert "stopped by SIGTERM" in err and "checkpoint saved" in err, err[-3000:]
        assert checkpoints.load(checkpoints.find(out))["step"] < 100
