"""A run folder whose run saved no checkpoint still holds that run's records: a fresh start
moves them into failed-start-N/ rather than mixing them into its metrics.jsonl, `--resume auto`
starts the same run again. The images `lsvr plot` writes into a run folder never stop it being resumed."""

import shutil
from pathlib import Path

import pytest
from tests.support import cli, files, start_ids, train

from lsvr.runs import checkpoints


@pytest.fixture(scope="module")
def run2(tiny_data, tmp_path_factory) -> Path:
    """A run of 2 steps: step-2 saved, no validation."""
    out = tmp_path_factory.mktemp("records") / "run2"
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 0
    return out


def without_checkpoints(run: Path, out: Path) -> Path:
    """The folder of a run whose checkpoints the user deleted (or that stopped before its first save)."""
    shutil.copytree(run, out)
    shutil.rmtree(out / "checkpoints")
    return out


def test_a_fresh_start_into_the_records_of_a_run_without_checkpoints_moves_them_aside(run2, tiny_data, tmp_path,
                                                                                      capsys):  # fmt: skip
    out = without_checkpoints(run2, tmp_path / "run")
    (old,) = start_ids(out)
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 0
    (new,) = start_ids(out)
    err = capsys.readouterr().err
    assert (f"lsvr train: {out} held run {old}, which saved no checkpoint: its records moved to"
            f" {out / 'failed-start-1'}; starting run {new}") in err, err  # fmt: skip
    assert files(out / "failed-start-1") == before and new != old


@pytest.mark.slow
def test_another_runs_checkpoint_into_records_without_checkpoints_is_refused(run2, tiny_data, tmp_path, capsys):
    other = tmp_path / "other"
    assert train(other, tiny_data, **{"train.max_steps": 2}) == 0
    out = without_checkpoints(run2, tmp_path / "run")
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", other, **{"train.max_steps": 4}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out}: holds the records (metrics.jsonl) of another run" in err, err
    assert files(out) == before
    # A checkpoint of the folder's own run (a copy kept elsewhere) continues that run there.
    assert train(out, tiny_data, "--resume", run2 / "checkpoints" / "step-00000002.pt", **{"train.max_steps": 4}) == 0
    assert start_ids(out) == start_ids(run2) * 2


def test_resume_auto_without_a_checkpoint_starts_the_folders_run_again(run2, tiny_data, tmp_path, capsys):
    out = without_checkpoints(run2, tmp_path / "run")
    (old,) = start_ids(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 2}) == 0
    err = capsys.readouterr().err
    assert f"lsvr train: {out} holds no checkpoint of run {old}: starting that run again from step 0" in err, err
    assert start_ids(out) == [old, old]
    assert checkpoints.load(checkpoints.find(out))["run_id"] == old


def test_a_torchrun_restart_before_the_first_save_continues_the_same_run(run2, tiny_data, tmp_path, monkeypatch):
    out = without_checkpoints(run2, tmp_path / "run")
    (old,) = start_ids(out)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # no --resume: cmd_train takes `auto`
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 0
    assert start_ids(out) == [old, old]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["loss.png", "curves.PDF", "plot.svg"])
def test_an_image_lsvr_plot_wrote_into_the_run_folder_does_not_stop_a_resume(name, run2, tiny_data, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run2, out)
    assert cli("plot", out, "--out", out / name) == 0 and (out / name).is_file()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 4}) == 0
    assert checkpoints.load(checkpoints.find(out))["step"] == 4


def test_a_stray_file_on_resume_is_to_be_moved_away_not_the_run_left(run2, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run2, out)
    (out / "notes.txt").write_text("mine\n")
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 4}) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"lsvr train: error: {out}: holds notes.txt, which lsvr does not write in a run folder;"
        f" move {out / 'notes.txt'} away to continue this run"
    )
    assert files(out) == before
