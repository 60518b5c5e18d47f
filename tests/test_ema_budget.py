"""train.ema (an average of the weights, BatchNorm statistics included) and train.time_budget_s (a
total step count fixed from the first steps' rate): their arithmetic against hand-written
references, their config errors, and two short runs (an EMA exact across a resume; a budget that
ends near its time with a validated, saved checkpoint)."""

import subprocess
import sys
import time

import pytest
import torch
from tests.support import CONFIG, ENV, cli, one_line, train_process
from torch import nn

from lsvr.config import TrainConfig
from lsvr.errors import InputError
from lsvr.inference import load_model
from lsvr.models.weights import read_state_dict
from lsvr.runs.metrics import read_metrics, time_to_accuracy
from lsvr.train import budget
from lsvr.train.budget import plan_steps
from lsvr.train.ema import WeightEMA, ema_decay
from lsvr.train.metrics import MetricsLog
from lsvr.train.parallel import Distributed


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_ema_follows_the_textbook_average_buffers_included():
    net = _bn_net()
    ema = WeightEMA(net, decay=0.8)
    reference = {k: v.clone().double() for k, v in net.state_dict().items()}
    for i in range(4):
        net.train()
        net(torch.randn(6, 3, 8, 8))  # moves BatchNorm's running statistics and its counter
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * (i + 1))  # an update
        ema.update()
        for key, value in net.state_dict().items():
            if value.is_floating_point():
                reference[key] = 0.8 * reference[key] + 0.2 * value.double()
            else:
                reference[key] = value.clone()
    averaged = ema.state_dict()
    assert averaged.keys() == reference.keys()
    assert int(averaged["1.num_batches_tracked"]) == 4
    for key, value in averaged.items():
        if value.is_floating_point():
            assert value.dtype == torch.float32
            # torch.testing.assert_close costs 2 s of imports at its first call
            assert torch.allclose(value.double(), reference[key], rtol=1e-6, atol=1e-6), key
        else:
            assert torch.equal(value, reference[key]), key
    # the average moved away from the model (its running_var too): it is not a copy
    assert not torch.allclose(averaged["1.running_var"], net.state_dict()["1.running_var"])


def test_ema_state_round_trips_in_place():
    net = _bn_net()
    ema = WeightEMA(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update()
    saved = {k: v.clone() for k, v in ema.state_dict().items()}
    other = WeightEMA(_bn_net(), decay=0.5)
    other.load_state_dict(saved)
    for key, value in other.state_dict().items():
        assert torch.equal(value, saved[key]), key
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update()
    assert not torch.equal(ema.state_dict()["0.weight"], saved["0.weight"])  # the references still follow


def test_the_decay_from_a_half_life_in_images():
    assert ema_decay(TrainConfig()) is None
    assert ema_decay(TrainConfig(ema=0.99)) == 0.99
    decay = ema_decay(TrainConfig(global_batch=256, ema_halflife=1024))
    assert decay == pytest.approx(0.5**0.25)
    # the same half-life averages over the same images at another batch
    assert ema_decay(TrainConfig(global_batch=64, ema_halflife=1024)) ** 16 == pytest.approx(decay**4)


@pytest.mark.parametrize(
    ("key", "needle"),
    [("train.ema=1.0", "train.ema must be in (0, 1)"), ("train.ema=-0.5", "train.ema must be in (0, 1)"),
     ("train.ema_halflife=-3.0", "train.ema_halflife must be >= 0"),
     ("train.time_budget_s=0.5", "train.time_budget_s must be >= 1 s"),
     ("train.time_budget_s=-1.0", "train.time_budget_s must be >= 1 s")],
)  # fmt: skip
def test_bad_ema_and_budget_settings_exit_2_with_one_line(key, needle, capsys, tmp_path):
    assert cli("train", CONFIG, "--out", tmp_path / "run", "--set", key) == 2
    one_line(capsys, needle)


def test_ema_and_half_life_together_are_refused(capsys, tmp_path):
    args = ("--set", "train.ema=0.9", "--set", "train.ema_halflife=100.0")
    assert cli("train", CONFIG, "--out", tmp_path / "run", *args) == 2
    one_line(capsys, "train.ema and train.ema_halflife both set")


def test_plan_steps_fills_the_time_left_validations_included():
    # 10 s left at step 10, 0.1 s a step, no validation: 100 more steps
    assert plan_steps(remaining_s=10, step=10, step_s=0.1, val_s=0, steps_per_epoch=1000, cap=10**6) == 110
    # a 1 s validation at each 50th step and at the end: 90 steps cost 8 s of steps + 2 validations
    assert plan_steps(remaining_s=10, step=10, step_s=0.1, val_s=1, steps_per_epoch=50, cap=10**6) == 90
    assert plan_steps(remaining_s=10, step=10, step_s=0.1, val_s=1, steps_per_epoch=50, cap=60) == 60  # epochs cap
    assert plan_steps(remaining_s=-5, step=10, step_s=0.1, val_s=1, steps_per_epoch=50, cap=100) == 10  # spent


def test_plan_steps_prices_each_step_by_its_side():
    # progressive resizing: steps from 50 on train at sqrt(2) x the timed side, twice the pixels.
    # 10 s left at step 10: steps 10-49 cost 4 s, the other 6 s buy 30 steps at 0.2 s
    weights = [1.0] * 50 + [2.0] * 1000
    assert plan_steps(remaining_s=10, step=10, step_s=0.1, val_s=0, steps_per_epoch=10**4, cap=1000,
                      weights=weights) == 80  # fmt: skip


def _budget_run(monkeypatch, tmp_path, *, seconds: float, step_s: float, steps: int):
    """TimeBudget.after_step over `steps` steps of step_s seconds each on a fake clock, 20 s
    after the process's start; what it returned at each step, the log and the lines said."""
    clock = iter(range(1000))
    monkeypatch.setattr(budget.time, "perf_counter", lambda: next(clock) * step_s)
    monkeypatch.setattr(budget.time, "time", lambda: 1020.0)
    env = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    timer = budget.TimeBudget(seconds, started=1000.0, env=env, val_images=300, global_batch=10,
                              steps_per_epoch=50, cap=10**6)  # fmt: skip
    log, said = MetricsLog(tmp_path / "metrics.jsonl", enabled=True), []
    returned = [timer.after_step(step, log=log, say=said.append) for step in range(1, steps + 1)]
    return returned, read_metrics(tmp_path / "metrics.jsonl"), said


def test_the_budget_fixes_the_total_once_after_the_timed_steps(monkeypatch, tmp_path):
    returned, records, said = _budget_run(monkeypatch, tmp_path, seconds=100.0, step_s=1.0, steps=15)
    fixed_at = budget.WARMUP_STEPS + budget.TIMED_STEPS + 1
    # 80 s left at step 10, 1 s a step, a validation of 300 images = 30 steps' images / 3 = 10 s:
    # 60 more steps and 2 validations (at step 50 and at the end: 60 + 20 = 80 s)
    assert returned == [None] * (fixed_at - 1) + [70] + [None] * (15 - fixed_at)
    assert records[-1]["kind"] == "budget" and records[-1]["total_steps"] == 70 and records[-1]["val_s"] == 10.0
    assert len(said) == 1 and "70 steps in all" in said[0]


def test_a_budget_spent_during_the_timed_steps_ends_the_run_there(monkeypatch, tmp_path):
    returned, records, _ = _budget_run(monkeypatch, tmp_path, seconds=15.0, step_s=1.0, steps=10)
    assert returned[-1] == 10 and records[-1]["spent_s"] == 20.0


def test_a_budget_spent_before_the_first_step_is_refused(monkeypatch):
    monkeypatch.setattr(budget.time, "time", lambda: 1005.0)
    env = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    timer = budget.TimeBudget(3.0, started=1000.0, env=env, val_images=0, global_batch=10, steps_per_epoch=5, cap=9)
    with pytest.raises(InputError, match=r"train.time_budget_s=3 is spent before the first step \(the process"
                                         r" started 5.0 s ago\)"):  # fmt: skip
        timer.check_start()


def test_time_to_accuracy_counts_from_the_process_start():
    records = [{"kind": "start", "time": 100.0, "process_start": 90.0},
               {"kind": "val", "time": 120.0, "epoch": 1, "top1": 80.0},
               {"kind": "val", "time": 130.0, "epoch": 2, "top1": 95.0}]  # fmt: skip
    assert time_to_accuracy(records, 93.0)["seconds"] == 40.0
    assert time_to_accuracy(records, 93.0)["total_seconds"] == 40.0
    del records[0]["process_start"]  # an older lsvr's record: its own time
    assert time_to_accuracy(records, 93.0)["seconds"] == 30.0


@pytest.mark.slow
def test_process_start_is_before_the_import():
    code = (
        "import time; time.sleep(0.5); from lsvr.train import budget;"
        " print(budget.IMPORTED_AT - budget.process_start())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert 0.45 <= float(out.stdout) < 30, out.stderr  # the sleep (and imports) came before lsvr's import


def _ema_sets(data, **extra) -> list[str]:
    base = {"data.train": data / "train", "data.val": "null", "data.holdout": 256, "model.name": "alexnet_small_bn",
            "train.ema": 0.8, "train.deterministic": "true", "train.max_steps": 6,
            "checkpoint.every_steps": 3}  # fmt: skip
    base.update(extra)
    return [x for k, v in base.items() for x in ("--set", f"{k}={v}")]


def _last(run, kind="val") -> dict:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == kind][-1]


@pytest.mark.slow
def test_ema_run_resumed_is_exact_and_its_readers_take_the_ema(demo_prepared, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli("train", CONFIG, "--out", whole, *_ema_sets(demo_prepared)) == 0
    assert cli("train", CONFIG, "--out", split, *_ema_sets(demo_prepared, **{"train.max_steps": 3})) == 0
    assert cli("train", CONFIG, "--out", split, "--resume", "auto", *_ema_sets(demo_prepared)) == 0
    a = torch.load(whole / "checkpoints" / "step-00000006.pt", weights_only=True)
    b = torch.load(split / "checkpoints" / "step-00000006.pt", weights_only=True)
    assert a["ema"].keys() == a["model"].keys()
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert not torch.equal(a["ema"]["features.conv1.weight"], a["model"]["features.conv1.weight"])
    val = {k: v for k, v in _last(whole).items() if k != "time"}
    assert val == {k: v for k, v in _last(split).items() if k != "time"}
    # eval, predict, export (load_model) and model.init_from (read_state_dict) take the EMA's weights
    model, _, _ = load_model(whole, torch.device("cpu"))
    for weights in (model.state_dict(), read_state_dict(whole)):
        assert all(torch.equal(weights[key], a["ema"][key]) for key in a["ema"])


@pytest.mark.slow
def test_a_time_budget_ends_near_it_validated_and_saved(demo_prepared, tmp_path):
    # the process's start (imports, data loading) takes 5 to 10 s of it on the 2-core machine
    budget, run = 25.0, tmp_path / "run"
    extra = {"data.train": demo_prepared / "train", "data.holdout": 256, "train.epochs": 50,
             "train.max_steps": 0, "train.time_budget_s": budget, "checkpoint.every_steps": 0,
             "optim.schedule": "cosine", "train.log_every": 5}  # fmt: skip
    result = train_process(run, demo_prepared, **extra)
    ended = time.time()
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_metrics(run / "metrics.jsonl")
    start, fixed, val = records[0], _last(run, "budget"), _last(run)
    assert "lsvr train: train.time_budget_s=25" in result.stderr
    total = fixed["total_steps"]
    assert 10 <= total < 50 * 312  # fewer steps than the epochs allow
    latest = (run / "checkpoints" / "latest").read_text().strip()
    saved = torch.load(run / "checkpoints" / latest, weights_only=True)
    assert saved["step"] == total == val["step"] and saved["budget_steps"] == total
    plans = [r for r in records if r["kind"] == "budget"]
    assert [r["plan"] for r in plans] == [1, 2]  # timed again over 50 steps, the schedule stretched to it
    assert saved["budget_replan"] == [plans[1]["step"], plans[0]["total_steps"]]
    took = val["time"] - start["process_start"]
    assert budget * 0.7 <= took <= budget * 1.2, (took, fixed)
    assert ended - start["process_start"] < budget * 1.3
    # a resume keeps the count, measuring nothing again: nothing is left to train
    again = train_process(run, demo_prepared, "--resume", "auto", **extra)
    assert again.returncode == 0 and "nothing to train" in again.stderr, again.stderr[-2000:]
