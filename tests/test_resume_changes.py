"""A resume with settings other than its checkpoint's says each change in one line; one that
changes the run's arithmetic (optim.lr, train.ema, ...) is refused unless --allow-changes asks
for it, and what is accepted is applied: the optimizer's groups carry the new lr, decay and
momentum, an EMA turned on starts from the checkpoint's weights."""

import shutil

import pytest
import torch
from tests.support import files, one_line, train

from lsvr.runs import checkpoints


@pytest.fixture(scope="module")
def two_steps(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("changes") / "run"
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 0
    return out


def test_a_change_of_the_arithmetic_is_refused_and_a_free_one_said(two_steps, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(two_steps, out)
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 3, "optim.lr": 5}) == 2
    line = one_line(capsys, "step-00000002.pt: resuming with settings that change the run's arithmetic:",
                    "optim.lr 0.01 -> 5", "--allow-changes")  # fmt: skip
    assert "max_steps" not in line  # the run's length is free to change
    assert files(out) == before  # nothing written

    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 3, "train.log_every": 2}) == 0
    err = capsys.readouterr().err
    assert ("lsvr train: resuming with settings changed from the checkpoint's: train.max_steps 2 -> 3,"
            " train.log_every 1 -> 2\n") in err  # fmt: skip


@pytest.mark.slow
def test_accepted_changes_reach_the_optimizer_and_an_ema_starts_at_the_checkpoints_weights(
    two_steps, tiny_data, tmp_path, capsys
):
    out = tmp_path / "run"
    shutil.copytree(two_steps, out)
    at_2 = checkpoints.load(out / "checkpoints" / "step-00000002.pt")["model"]
    change = {"train.max_steps": 3, "optim.lr": 5, "optim.weight_decay": 0.0, "optim.momentum": 0.5, "train.ema": 0.9}
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", "--allow-changes", **change) == 0
    err = capsys.readouterr().err
    assert (
        "lsvr train: resuming with settings changed from the checkpoint's (--allow-changes): train.max_steps 2 -> 3,"
        " train.ema 0.0 -> 0.9 (the EMA starts from the checkpoint's weights), optim.lr 0.01 -> 5.0,"
        " optim.momentum 0.9 -> 0.5, optim.weight_decay 0.0005 -> 0.0\n"
    ) in err
    saved = checkpoints.load(out / "checkpoints" / "step-00000003.pt")
    weights = saved["optimizer"]["param_groups"][0]
    assert (weights["lr"], weights["momentum"], weights["weight_decay"]) == (5.0, 0.5, 0.0)
    at_3 = saved["model"]
    for key, average in saved["ema"].items():  # one step of the average from the step-2 weights
        if average.is_floating_point():
            assert torch.allclose(average, 0.9 * at_2[key] + 0.1 * at_3[key], atol=1e-6), key


def test_allow_changes_without_a_resume_is_refused(tiny_data, tmp_path, capsys):
    assert train(tmp_path / "run", tiny_data, "--allow-changes") == 2
    one_line(capsys, "--allow-changes: applies to a resume only")
    assert not (tmp_path / "run").exists()
