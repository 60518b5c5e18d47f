"""`lsvr eval` refuses a set whose images differ from what the checkpoint was trained on,
naming the field and both values; --allow-mismatch lets a resize difference through, warned."""

from pathlib import Path

import pytest
from tests.support import CONFIG, cli, sets, write_tree


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tree of 60x45 photos (so center and squash differ), prepared three ways, and a run
    trained on the --resize center set: (run folder, folder of the prepared sets)."""
    folder = tmp_path_factory.mktemp("match")
    tree = write_tree(folder / "tree", {"a": 40, "b": 40, "c": 40})
    for name, extra in (("center", ["--resize", "center"]), ("squash", ["--resize", "squash"]),
                        ("grey", ["--resize", "center", "--channels", "1"])):  # fmt: skip
        assert cli("prepare", tree, folder / name, "--size", "32", "--no-progress", *extra) == 0
    run = folder / "run"
    assert cli("train", CONFIG, "--out", run, *sets(folder / "center", **{"train.epochs": 1})) == 0
    return run, folder


def test_eval_refuses_another_resize_policy_naming_both(trained, capsys):
    run, folder = trained
    capsys.readouterr()
    assert cli("eval", run, folder / "squash") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "resize: checkpoint 'center', dataset 'squash' (prepare with --resize center)" in err, err


def test_allow_mismatch_scores_it_with_a_warning(trained, capsys):
    run, folder = trained
    capsys.readouterr()
    assert cli("eval", run, folder / "squash", "--allow-mismatch") == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "resize: checkpoint 'center', dataset 'squash'" in captured.err
    assert "top-1" in captured.out


def test_grey_set_for_an_rgb_checkpoint_suggests_channels(trained, capsys):
    run, folder = trained
    capsys.readouterr()
    assert cli("eval", run, folder / "grey", "--allow-mismatch") == 2  # a model of 3 channels cannot run on 1
    err = capsys.readouterr().err
    assert "channels: checkpoint 3, dataset 1 (prepare with --channels 3)" in err and "--size" not in err, err


def test_the_matching_set_is_scored(trained, capsys):
    run, folder = trained
    capsys.readouterr()
    assert cli("eval", run, folder / "center") == 0
    assert "top-1" in capsys.readouterr().out
