"""Where a run's time goes: data-wait and compute-only images/s in every `train` record, the
loader-bottleneck warning, TensorBoard scalars, the profiler's trace; and their bad input."""

import builtins
import json
import time

import pytest
from tests.support import train

from lsvr.data.loader import Loader
from lsvr.runs.metrics import read_metrics
from lsvr.train.throughput import Throughput


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_window_splits_its_time_into_data_wait_and_compute():
    clock = Clock()
    meter = Throughput(10, step=0, clock=clock)
    meter.start_epoch(0, 0)

    def slow_items():
        for i in range(4):
            clock.now += 0.5  # each item takes 0.5 s to come
            yield i

    for _ in meter.timed(slow_items()):
        clock.now += 1.5  # the step
    meter.pause(2.0)  # a save: neither data nor compute
    clock.now += 2.0
    first = meter.window(4)
    assert first.warm_up and first.seconds == pytest.approx(8.0)
    assert first.data_wait == pytest.approx(0.25)
    assert first.compute_images_per_sec == pytest.approx(40 / 6.0)
    clock.now += 1.0
    second = meter.window(5)
    assert not second.warm_up and second.data_wait == 0.0 and second.compute_images_per_sec == pytest.approx(10.0)


def slow_loader(monkeypatch, seconds: float) -> None:
    """Every batch takes `seconds` longer to come: a loader that cannot keep up."""
    batches = Loader.batches

    def slowed(self, *args, **kwargs):
        for batch in batches(self, *args, **kwargs):
            time.sleep(seconds)
            yield batch

    monkeypatch.setattr(Loader, "batches", slowed)


@pytest.mark.slow
def test_a_slow_loader_shows_in_the_records_and_warns_once(tiny_data, tmp_path, monkeypatch, capsys):
    slow_loader(monkeypatch, 0.6)  # data_wait > 0.5 while a step computes in under 0.6 s (a busy machine)
    out = tmp_path / "run"
    assert train(out, tiny_data, **{"train.log_every": 2, "train.epochs": 2}) == 0
    records = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert records and all(0.5 < r["data_wait"] <= 1.0 for r in records), records
    assert all(r["compute_images_per_sec"] > r["images_per_sec"] for r in records)
    assert all(r["memory_mb"] > 0 for r in records)
    err = capsys.readouterr().err
    assert err.count("the loader is the bottleneck") == 1, err
    assert "more data.workers (now 1)" in err


@pytest.mark.slow
def test_a_fast_loader_is_not_blamed(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, tiny_data, **{"train.log_every": 2, "train.data_wait_warn": 0.9}) == 0
    records = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert all(0.0 <= r["data_wait"] < 0.9 for r in records)
    assert "bottleneck" not in capsys.readouterr().err


@pytest.mark.slow
def test_tensorboard_gets_the_logged_scalars(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert train(out, tiny_data, **{"train.tensorboard": "true", "train.log_every": 2, "data.holdout": 32}) == 0
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    want = {"train/loss", "train/lr", "train/images_per_sec", "train/compute_images_per_sec", "train/data_wait",
            "train/memory_mb", "val/top1", "val/top5", "val/loss"}  # fmt: skip
    assert want <= tags, tags
    logged = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in logged]
    assert loss[-1].value == pytest.approx(logged[-1]["loss"], rel=1e-5)


@pytest.mark.slow
def test_a_run_with_its_tensorboard_and_profile_folders_resumes(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train(out, tiny_data, "--profile", "2", **{"train.tensorboard": "true", "train.epochs": 2}) == 0
    assert (out / "tb").is_dir() and (out / "profile").is_dir()
    assert train(out, tiny_data, "--resume", "auto", **{"train.tensorboard": "true", "train.epochs": 3}) == 0
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 2


def test_tensorboard_asked_without_the_package_is_one_line_and_writes_nothing(tiny_data, tmp_path, monkeypatch,
                                                                            capsys):  # fmt: skip
    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out = tmp_path / "run"
    assert train(out, tiny_data, **{"train.tensorboard": "true"}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'lsvr[tensorboard]'" in err, err
    assert not out.exists()


@pytest.mark.slow
def test_profile_writes_a_trace_and_names_the_top_operators(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, tiny_data, "--profile", "3", **{"train.epochs": 2}) == 0
    (trace,) = (out / "profile").glob("trace-steps-*.json")
    assert trace.name == "trace-steps-7-9.json"  # 5 steps left alone, 1 to warm the profiler, then 3
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name", "").startswith("aten::") for e in events)
    assert "aten::" in (out / "profile" / "top-ops.txt").read_text()
    (record,) = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "profile"]
    assert record["steps"] == 3 and record["trace"] == str(trace) and len(record["top"]) == 10
    assert sum(op["share"] for op in record["top"]) <= 1.0 + 1e-6
    err = capsys.readouterr().err
    assert "profile: steps 7-9 ->" in err and "ms/step" in err


@pytest.mark.slow
def test_a_run_shorter_than_the_profile_keeps_what_it_recorded(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, tiny_data, "--profile", "50", **{"train.epochs": 2}) == 0  # 10 steps in all
    assert (out / "profile" / "trace-steps-7-10.json").is_file()
    assert "(the run ended: 4 of 50)" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "says"), [
    (["--profile", "0"], "--profile must be a positive whole number, got 0"),
    (["--profile", "-3"], "--profile must be a positive whole number, got -3"),
    (["--set", "train.profile_steps=-1"], "train.profile_steps must be >= 0, got -1"),
    (["--set", "train.data_wait_warn=1.5"], "train.data_wait_warn must be in [0, 1), got 1.5"),
])  # fmt: skip
def test_bad_observer_settings_are_one_line(tiny_data, tmp_path, capsys, args, says):
    out = tmp_path / "run"
    assert train(out, tiny_data, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not out.exists()


@pytest.mark.slow
def test_a_refused_start_with_tensorboard_leaves_no_folder(tiny_data, tmp_path):
    first = tmp_path / "first"
    assert train(first, tiny_data, **{"train.epochs": 1}) == 0
    fresh = tmp_path / "fresh"  # the checkpoint cannot fit a model of another width: refused in resume
    assert train(fresh, tiny_data, "--resume", first, **{"train.tensorboard": "true", "model.width": 0.5}) == 2
    assert not fresh.exists()
