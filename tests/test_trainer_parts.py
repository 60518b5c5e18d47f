"""The Trainer's small parts on their own: RunState, the Throughput meter, launch_env, RunFolder's writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsvr.train.parallel import LaunchEnv, launch_env
from lsvr.train.run_folder import RunFolder
from lsvr.train.state import RunState
from lsvr.train.throughput import Throughput


def test_run_state_round_trips_through_a_checkpoint_dict() -> None:
    state = RunState(global_batch=32, step=70, epoch=2, batch=5, best_top1=41.5, last_val={"top1": 40.0})
    saved = state.state_dict()
    assert saved["loader"] == {"epoch": 2, "step": 5, "sample": 160, "global_batch": 32}
    assert (saved["step"], saved["epoch"], saved["metrics"], saved["best_top1"]) == (70, 2, {"top1": 40.0}, 41.5)
    back = RunState(global_batch=32)
    back.load_state_dict(saved)
    assert back == state


def test_run_state_without_a_validation_saves_empty_metrics_and_loads_none() -> None:
    saved = RunState(global_batch=8, step=3, batch=3).state_dict()
    assert saved["metrics"] == {} and saved["best_top1"] is None
    back = RunState(global_batch=8)
    back.load_state_dict(saved)
    assert back.last_val is None and back.step == 3


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throughput_figures() -> None:
    clock = _Clock()
    meter = Throughput(64, step=10, clock=clock)
    meter.start_epoch(4)  # resumed at global batch 4 of the epoch
    clock.now += 5.0
    for step in range(11, 20):
        meter.tick(step)
    assert meter.sec_per_20 is None  # not 20 steps yet: shown as nothing rather than nan
    meter.tick(20)
    assert meter.sec_per_20 == pytest.approx(5.0 * 20 / 10)
    seconds, ips = meter.since_epoch_start(14)
    assert seconds == pytest.approx(5.0) and ips == pytest.approx(64 * 10 / 5.0)
    assert meter.eta_s(100, ips) == pytest.approx(100 * 64 / ips)


def test_launch_env_reads_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_USE_AGENT_STORE"):
        monkeypatch.delenv(name, raising=False)
    assert launch_env() == LaunchEnv()  # a plain process: rank 0 of 1, first attempt
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    env = launch_env()
    assert (env.rank, env.world, env.local_rank, env.restart, env.is_main) == (3, 4, 1, 2, False)


def test_run_folder_writes_only_while_its_lock_is_held(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / ".step-00000004.pt.tmp").write_bytes(b"x")
    folder = RunFolder(out, main=True)
    assert not folder.writing() and folder.clean_leftovers() == []  # not opened: nothing is touched
    with folder:
        assert folder.writing() and folder.metrics_log().enabled
        assert [p.name for p in folder.clean_leftovers()] == [".step-00000004.pt.tmp"]
    assert not folder.writing() and not folder.metrics_log().enabled
    with RunFolder(out, main=False) as other_rank:
        assert not other_rank.writing()


def test_run_folder_refuses_to_record_a_start_without_its_lock(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run", main=True)
    with pytest.raises(RuntimeError, match="without holding its lock"):
        folder.record_start("train: {}\n", lambda: None)
    assert not (tmp_path / "run").exists()
