"""The run folder: one run at a time (lock), one run per folder (run ids), refused early
when it cannot be written, a full disk and a torn metrics line, SIGTERM during start-up."""

import errno
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import CONFIG, ENV, cli, files, sets, train, train_process, wait_for

from lsvr.runs import checkpoints
from lsvr.runs.metrics import read_metrics


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_is_refused_naming_the_holder(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    first = train_process(out, tiny_data, background=True, **{"debug.fault": "hang", "debug.step": 3})
    try:
        # step 2 saved (`latest`, the save's last write, in place), then step 3 hangs: nothing more is written
        wait_for(lambda: (out / "checkpoints" / "latest").is_file() and checkpoints.find(out) is not None)
        before = files(out)
        for args in ([], ["--resume", "auto"]):
            assert train(out, tiny_data, *args) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"in use by another lsvr process ({first.pid}@" in err, err
        assert files(out) == before  # no config.yaml rewrite, no metrics line
    finally:
        first.kill()
        first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL and (out / ".lock").read_text().startswith(f"{first.pid}@")
    assert train(out, tiny_data, "--resume", "auto") == 0  # a killed holder's lock blocks nobody
    starts = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "start"]
    assert len(starts) == 2 and starts[0]["run_id"] == starts[1]["run_id"]


@pytest.mark.slow
def test_a_checkpoint_of_another_run_never_mixes_two_runs(tiny_data, tmp_path, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert train(a, tiny_data, **{"train.max_steps": 2, "data.holdout": 32}) == 0  # validated: metrics in a
    assert train(b, tiny_data, **{"train.max_steps": 2}) == 0
    capsys.readouterr()
    before = files(b)
    assert train(b, tiny_data, "--resume", a, **{"train.max_steps": 4}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{b}: holds the checkpoints of another run" in err, err
    assert files(b) == before
    # Into an empty folder: a new run from it, said on one line; no stale validation printed.
    assert train(c, tiny_data, "--resume", a, **{"train.max_steps": 4}) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if "is a checkpoint of another run" in line]
    assert len(notes) == 1 and "starting a new run" in notes[0] and "val top-1" not in out, (out, err)
    run_a, run_c = (checkpoints.load(checkpoints.find(x)) for x in (a, c))
    assert run_c["step"] == 4 and run_c["run_id"] != run_a["run_id"] and not run_c["metrics"]
    assert train(c, tiny_data, "--resume", "auto", **{"train.max_steps": 6}) == 0  # now its own run
    assert checkpoints.load(checkpoints.find(c))["run_id"] == run_c["run_id"]
    assert "another run" not in capsys.readouterr().err


@pytest.fixture
def read_only_folder(tmp_path, monkeypatch):
    """A read-only place, as root: a read-only tmpfs; where mounting is not allowed, a
    temp-file creation there that raises as a read-only file system does."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True, timeout=30).returncode == 0  # fmt: skip
    if not mounted:
        import tempfile

        real = tempfile.NamedTemporaryFile

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).is_relative_to(folder):
                raise OSError(errno.EROFS, "Read-only file system")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr("tempfile.NamedTemporaryFile", refuse)
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True, timeout=30)


def test_a_read_only_out_is_refused_before_any_work(read_only_folder, capsys):
    out = read_only_folder / "run"
    code = cli("train", CONFIG, "--out", out, "--set", "data.train=/nonexistent/set")  # the data is not even read
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"lsvr train: error: {out}: run folder cannot be written ({read_only_folder}: Read-only file system)"


@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs of 48 MiB (a few debug checkpoints), for a real full disk (ENOSPC)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(folder)], timeout=30).returncode:
        pytest.skip("cannot mount a tmpfs here (the monkeypatched full disk below still runs)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True, timeout=30)


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096):  # to the last page
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


def test_resume_on_a_full_disk_is_one_line_exit_1_and_loses_nothing(tiny_data, full_disk, capsys):
    out = full_disk / "run"
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 0
    before = files(out)
    fill(full_disk)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 4}) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "is intact" in err, err
    assert files(out) == before


def test_metrics_on_a_full_disk_at_start_is_one_line_exit_1(tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 0
    saved = files(out / "checkpoints")

    def full(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr("lsvr.train.metrics.open", full, raising=False)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 4}) == 1
    err = capsys.readouterr().err.strip()
    expected = (
        f"lsvr train: stopped: {out / 'metrics.jsonl'}: could not be written (No space left on device);"
        f" the previous checkpoint {checkpoints.find(out)} is intact"
    )
    assert err.splitlines()[-1] == expected
    assert files(out / "checkpoints") == saved


@pytest.mark.slow
def test_every_metrics_record_starts_on_its_own_line_after_a_torn_one(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # a run killed mid-line
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 4}) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    torn = [line for line in lines if not line.endswith("}")]
    assert torn == ['{"kind": "train", "step": 3, "lo']
    assert [json.loads(line)["kind"] for line in lines if line.endswith("}")].count("start") == 2


@pytest.mark.slow
def test_sigterm_during_start_up_says_so_inone_line(tiny_data, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lsvr", "train", str(CONFIG), "--out", str(out), *sets(tiny_data)]
    run = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = Path(f"/proc/{run.pid}/status")

    def catches_sigterm() -> bool:  # SigCgt: the mask of signals with a handler
        text = status.read_text() if status.exists() else ""
        mask = next((line.split()[1] for line in text.splitlines() if line.startswith("SigCgt")), "0")
        return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))

    try:
        wait_for(catches_sigterm, 60)
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "lsvr train: stopped during start-up; nothing to save"
    assert "Traceback" not in err and checkpoints.find(out) is None
