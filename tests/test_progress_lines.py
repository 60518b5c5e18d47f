"""Progress in a log that is not a terminal: whole lines, one per logging window, no carriage
returns; on a terminal the bar never shows nan for a figure not measured yet."""

import sys

import numpy as np
import pytest
from tests.support import CONFIG, cli, sets, write_idx


def train_stderr(data, out, capsys) -> str:
    capsys.readouterr()
    args = sets(data, **{"train.epochs": 1, "train.progress": "true", "train.log_every": 2, "model.dropout": 0.0})
    assert cli("train", CONFIG, "--out", out, *args) == 0
    return capsys.readouterr().err


@pytest.mark.slow
def test_training_progress_is_one_line_per_window_when_stderr_is_a_file(tiny_data, tmp_path, capsys):
    err = train_stderr(tiny_data, tmp_path / "run", capsys)  # capsys: stderr is no terminal
    assert "\r" not in err and "=nan" not in err
    windows = [line for line in err.splitlines() if line.startswith("epoch 1/1: ")]
    assert [w.split()[2] for w in windows] == ["2/5", "4/5", "5/5"], err  # 5 steps, log_every 2, and the last
    assert all("loss=" in w and "img_s=" in w and "run_eta=" in w for w in windows)


@pytest.mark.slow
def test_the_bar_leaves_out_s_20it_until_20_steps_are_timed(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    err = train_stderr(tiny_data, tmp_path / "run", capsys)
    assert "\r" in err and "loss=" in err  # the terminal's bar
    assert "=nan" not in err and "s_20it=" not in err, err


def test_prepare_progress_has_no_carriage_returns_in_a_log(tmp_path, capsys):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.random.default_rng(0).integers(0, 256, (40, 8, 8)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(40) % 4)
    capsys.readouterr()
    assert cli("prepare", tmp_path, tmp_path / "out", "--size", "8") == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "prepare: 40/40 img" in err, err
