"""train.time_budget_s's second plan: the steps at the ramp's last side (or, with no ramp, the
steps after the first plan) timed again over a longer window, the total fixed once more, and the
schedule's tail stretched to it without a jump; its record in the checkpoint."""

import pytest
import torch

from lsvr.config import OptimConfig
from lsvr.runs.metrics import read_metrics
from lsvr.runs.record import CheckpointRecord
from lsvr.train import budget
from lsvr.train.budget import AGAIN_STEPS, TIMED_STEPS, WARMUP_STEPS, first_at_last_side, plan_steps
from lsvr.train.metrics import MetricsLog
from lsvr.train.optim import Schedule
from lsvr.train.parallel import Distributed
from lsvr.train.state import RunState

SPE = 100  # steps per epoch


def side_at(step: int) -> int:
    return 16 if step < 150 else 28  # the ramp's last side from step 150


def _run(monkeypatch, tmp_path, *, small_s: float, large_s: float, steps: int, fixed: int | None = None):
    """after_step over steps 1..`steps` (from fixed's resume at step 0 too), each step costing
    small_s at 16 px and large_s at 28 px on a fake clock, 20 s after the process's start."""
    now = [0.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(budget.time, "time", lambda: 1020.0)
    env = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    timer = budget.TimeBudget(600.0, started=1000.0, env=env, val_images=0, global_batch=10, steps_per_epoch=SPE,
                              cap=10**4, side_at=side_at, fixed=fixed)  # fmt: skip
    log, said, returned = MetricsLog(tmp_path / "metrics.jsonl", enabled=True), [], {}
    for step in range(1, steps + 1):
        now[0] += small_s if side_at(step - 1) == 16 else large_s  # step `step` (0-based step-1) ran
        total = timer.after_step(step, log=log, say=said.append)
        if total is not None:
            returned[step] = total
    return returned, [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "budget"], said


def test_the_first_step_at_the_last_side():
    assert first_at_last_side(side_at, 10**4) == 150
    assert first_at_last_side(side_at, 100) == 0  # the run ends before the last side: its first side is its last
    assert first_at_last_side(lambda s: [8, 8, 12, 16, 16][s], 5) == 3


def test_the_second_plan_prices_the_rest_by_the_last_sides_own_steps(monkeypatch, tmp_path):
    # 16 px steps take 0.1 s, 28 px steps 0.19 s, where pixels would say 0.306 s
    returned, records, said = _run(monkeypatch, tmp_path, small_s=0.1, large_s=0.19, steps=400)
    first_at = WARMUP_STEPS + TIMED_STEPS + 1
    again_at = 150 + WARMUP_STEPS + AGAIN_STEPS
    assert sorted(returned) == [first_at, again_at]
    weights = [side_at(s) ** 2 / 16**2 for s in range(10**4)]
    first = plan_steps(remaining_s=580, step=first_at, step_s=0.1, val_s=0, steps_per_epoch=SPE, cap=10**4,
                       weights=weights)  # fmt: skip
    assert returned[first_at] == first == 150 + int((580 - 14) / (0.1 * 3.0625))  # pixels: short
    assert returned[again_at] == again_at + int(580 / 0.19 + 1e-9)  # the clock is fixed: all 580 s are left
    assert [r["plan"] for r in records] == [1, 2] and records[1]["step_s"] == pytest.approx(0.19)
    assert "timed again over 50 steps" in said[1]


def test_a_resume_between_the_plans_makes_only_the_second(monkeypatch, tmp_path):
    returned, records, _ = _run(monkeypatch, tmp_path, small_s=0.1, large_s=0.2, steps=300, fixed=2000)
    assert list(returned) == [150 + WARMUP_STEPS + AGAIN_STEPS] and [r["plan"] for r in records] == [2]


def test_a_run_that_ends_before_the_last_side_plans_once(monkeypatch, tmp_path):
    now = [0.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now.__setitem__(0, now[0] + 1.0) or now[0])
    monkeypatch.setattr(budget.time, "time", lambda: 1020.0)
    env = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    timer = budget.TimeBudget(60.0, started=1000.0, env=env, val_images=0, global_batch=10, steps_per_epoch=SPE,
                              cap=10**4, side_at=side_at)  # fmt: skip
    log = MetricsLog(tmp_path / "metrics.jsonl", enabled=True)
    returned = [timer.after_step(step, log=log, say=lambda _: None) for step in range(1, 300)]
    assert [r for r in returned if r is not None] == [50] and timer.done  # 40 s left at 1 s a step


@pytest.mark.parametrize("kind", ["triangular", "cosine", "linear", "step"])
def test_a_replanned_schedule_goes_on_from_its_lr_and_ends_at_the_new_total(kind):
    cfg = OptimConfig(schedule=kind, peak=1, lr_steps=[3, 6])
    planned = Schedule(cfg, steps_per_epoch=SPE, total_steps=800)
    for total in (1200, 500):  # the second plan found more time, or less
        replanned = Schedule(cfg, steps_per_epoch=SPE, total_steps=total, replan=(300, 800))
        assert [replanned.factor(s) for s in range(301)] == [planned.factor(s) for s in range(301)]
        # the tail is the planned one stretched: step 300 + k*(total-300)/500 is planned step 300 + k
        for k in (1, 250, 499, 500):
            assert replanned.factor(300 + k * (total - 300) / 500) == pytest.approx(planned.factor(300 + k))
        if kind != "step":
            assert replanned.factor(total) == pytest.approx(0.0, abs=1e-12)
            assert replanned.factor(total - 1) > 1e-6


def test_the_second_plan_is_kept_in_the_run_state_and_the_checkpoint():
    state = RunState(global_batch=256, step=420, budget_steps=3000, budget_replan=[203, 2400])
    saved = state.state_dict()
    record = CheckpointRecord.from_dict({"model": {}, **saved}, where="x.pt")
    assert record.budget_replan == [203, 2400] and record.to_dict()["budget_replan"] == [203, 2400]
    again = RunState(global_batch=256)
    again.load_state_dict({key: getattr(record, key) for key in RunState.KEYS})
    assert (again.budget_steps, again.budget_replan) == (3000, [203, 2400])
    older = CheckpointRecord.from_dict({"model": {}, **RunState(global_batch=256, budget_steps=9).state_dict()},
                                       where="x.pt")  # fmt: skip
    assert "budget_replan" not in older.to_dict()  # a run without a second plan writes what it wrote before
