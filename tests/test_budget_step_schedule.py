"""A time budget shortens the run; the step schedule's drops (optim.lr_steps) move with it, to
the same fractions of the shorter run, as cosine's end does, and the run says so in one line."""

import pytest
from tests.support import train

from lsvr.config import OptimConfig
from lsvr.runs.metrics import read_metrics
from lsvr.train import budget
from lsvr.train.optim import Schedule


def test_the_drops_move_to_the_same_fractions_of_the_budgets_run():
    cfg = OptimConfig(schedule="step", lr_steps=[20, 25], lr=1.0)
    schedule = Schedule(cfg, steps_per_epoch=5, total_steps=60, planned_steps=150)
    factors = [schedule.factor(s) for s in range(60)]
    assert factors.index(0.1) == 40 and factors.index(pytest.approx(0.01)) == 50  # 100/150 and 125/150 of 60
    assert "move from steps 100, 125 to steps 40, 50" in schedule.budget_note()
    unchanged = Schedule(cfg, steps_per_epoch=5, total_steps=150, planned_steps=150)
    assert unchanged.boundaries == [100, 125] and unchanged.budget_note() is None
    cosine = Schedule(OptimConfig(schedule="cosine"), steps_per_epoch=5, total_steps=60, planned_steps=150)
    assert cosine.budget_note() is None


def test_a_replanned_budget_says_where_the_stretched_drops_fall():
    cfg = OptimConfig(schedule="step", lr_steps=[20, 25])
    schedule = Schedule(cfg, steps_per_epoch=5, total_steps=90, planned_steps=150, replan=(30, 60))
    factors = [schedule.factor(s) for s in range(90)]
    drops = [s for s in range(1, 90) if factors[s] < factors[s - 1]]
    assert drops == schedule.drops() == [50, 70]  # planned 40, 50 of 60; from step 30 on twice as long, to end at 90


@pytest.mark.slow
def test_a_budgeted_run_drops_the_lr_inside_the_steps_it_trains(tiny_data, tmp_path, monkeypatch, capsys):
    # The budget's count is fixed from measured steps (at step 10); here it is 20 whatever the machine.
    monkeypatch.setattr(budget, "plan_steps", lambda **_: 20)
    out = tmp_path / "run"
    extra = {"train.epochs": 12, "optim.lr_steps": "[8, 10]", "optim.lr": 0.01, "train.time_budget_s": 10**6,
             "checkpoint.every_steps": 0}  # fmt: skip
    assert train(out, tiny_data, **extra) == 0
    lrs = {r["step"]: r["lr"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"}
    assert max(lrs) == 20
    # steps 40 and 50 of 60 planned: steps 13 and 17 of the budget's 20 (the record of step k ran step k-1)
    assert lrs[13] == pytest.approx(0.01) and lrs[14] == pytest.approx(0.001)
    assert lrs[17] == pytest.approx(0.001) and lrs[18] == pytest.approx(0.0001)
    err = capsys.readouterr().err
    assert "optim.schedule=step: train.time_budget_s fixed 20 steps" in err
    assert "from steps 40, 50 to steps 13, 17" in err
