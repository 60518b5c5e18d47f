"""Resuming a run that has nothing left to train (at train.max_steps, or past its last
epoch) says so in one line, exits 0 and leaves the run folder byte-identical; a checkpoint
saved on an epoch's last step before its validation still validates."""

import os
import shutil
import signal
from pathlib import Path

import pytest
from tests.support import CONFIG, files, sets, train

from lsvr.config_file import load_config
from lsvr.runs import checkpoints
from lsvr.runs.metrics import read_metrics
from lsvr.train.engine import train as train_run


@pytest.fixture(scope="module")
def run4(tiny_data, tmp_path_factory) -> Path:
    """A run of 4 steps (of 5 an epoch): step-2 and step-4 saved."""
    out = tmp_path_factory.mktemp("finished") / "run4"
    assert train(out, tiny_data, **{"train.max_steps": 4}) == 0
    return out


@pytest.mark.parametrize("max_steps", [4, 3])
def test_resuming_at_or_past_max_steps_trains_nothing_and_writes_nothing(max_steps, run4, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run4, out)
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": max_steps}) == 0
    std = capsys.readouterr()
    assert std.err.strip() == (
        f"lsvr train: {out} is already at step 4 (train.max_steps={max_steps}): nothing to train"
    ), std.err
    assert std.out == ""
    assert files(out) == before  # no start line, no config.yaml rewrite, no validation


@pytest.mark.slow
def test_resuming_a_run_past_its_last_epoch_trains_nothing(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, tiny_data, **{"train.epochs": 1, "data.holdout": 32}) == 0  # 4 steps, validated
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.epochs": 1, "data.holdout": 32}) == 0
    err = capsys.readouterr().err.strip()
    assert err == f"lsvr train: {out} is already at step 4 (all 1 epochs done): nothing to train", err
    assert files(out) == before
    assert train(out, tiny_data, "--resume", "auto", **{"train.epochs": 2, "data.holdout": 32}) == 0  # more: trains
    assert checkpoints.load(checkpoints.find(out))["step"] == 8


@pytest.mark.slow
def test_a_stop_on_the_last_step_still_validates_before_nothing_is_left(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    # data.holdout=32 leaves 4 steps an epoch; train.max_steps=4: SIGTERM after step 3 is seen
    # in step 4's check, so the checkpoint falls on the run's last step, before its validation.
    extra = {"data.holdout": 32, "train.max_steps": 4}
    cfg = load_config(CONFIG, sets(tiny_data, **extra)[1::2])  # the "key=value" of each --set

    def sigterm_after_step_3(step, model, env):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    assert train_run(cfg, out=out, on_step=sigterm_after_step_3)["stopped"] == "SIGTERM"
    assert checkpoints.load(checkpoints.find(out))["loader"]["step"] == 4
    assert train(out, tiny_data, "--resume", "auto", **extra) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "val"] == [4]
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **extra) == 0  # now finished
    assert "is already at step 4 (train.max_steps=4): nothing to train" in capsys.readouterr().err
    assert files(out) == before
