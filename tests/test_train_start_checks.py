"""What `lsvr train` refuses before it writes anything (a crop larger than the stored images,
a float key outside float32, a holdout that leaves no side, a dangling --out link), and a run
that failed before its first checkpoint: the same command starts it again, its records moved
aside into RUN/failed-start-N/."""

import pytest
from tests.support import as_rank, one_line, start_ids, train

from lsvr.runs import checkpoints


@pytest.mark.parametrize("augment", ["crop", "rrc"])
def test_a_crop_larger_than_the_stored_images_exits_2_before_anything_is_written(tiny_data, tmp_path, capsys,
                                                                                  augment):  # fmt: skip
    # rrc asked for 408 GB of classifier weights at 10000 px (a traceback); the paper's crop was refused
    out = tmp_path / "run"
    capsys.readouterr()
    assert train(out, tiny_data, **{"data.crop": 10000, "data.augment": augment}) == 2
    one_line(capsys, "data.crop=10000 is larger than the images of", "(32)", "at most 32")
    assert not out.exists()


def test_a_refused_start_into_new_nested_folders_leaves_none_of_them(tiny_data, tmp_path, capsys):
    # `--out runs/photos` refused left an empty `runs/` behind
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "runs" / "week1" / "run"
    assert train(out, tiny_data, **{"data.crop": 10000}) == 2
    one_line(capsys, "data.crop=10000 is larger than the images of")
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize(
    ("key", "value"), [("optim.lr", "1e308"), ("optim.weight_decay", "1.0e308"), ("data.rrc_ratio", "[0.5, 1.0e39]")]
)
def test_a_float_key_outside_float32_exits_2_naming_it(tiny_data, tmp_path, capsys, key, value):
    out = tmp_path / "run"
    capsys.readouterr()
    assert train(out, tiny_data, **{key: value}) == 2
    one_line(capsys, f"config: {key} must be a finite number within float32's range")
    assert not out.exists()


def test_a_holdout_of_the_whole_set_names_the_bounds_that_hold(tiny_data, tmp_path, capsys):
    capsys.readouterr()
    assert train(tmp_path / "run", tiny_data, **{"data.holdout": 160}) == 2
    one_line(capsys, "data.holdout=160 must be between 1 and 159", "holds 160 images")


def test_a_holdout_beside_data_val_says_data_val_is_unused(tiny_data, tmp_path, capsys):
    capsys.readouterr()
    assert train(tmp_path / "run", tiny_data, **{"data.holdout": 32, "data.val": tiny_data, "train.max_steps": 1}) == 0
    err = capsys.readouterr().err
    assert err.count(f"data.val={tiny_data} is not used") == 1, err


def test_a_dangling_link_as_out_exits_2_and_creates_nothing(tiny_data, tmp_path, capsys):
    out, target = tmp_path / "run", tmp_path / "gone" / "run"
    out.symlink_to(target)
    capsys.readouterr()
    assert train(out, tiny_data) == 2
    one_line(capsys, f"{out}: a symbolic link to {target}, which does not exist")
    assert out.is_symlink() and not (tmp_path / "gone").exists()


def test_a_run_that_failed_before_its_first_checkpoint_starts_again_with_its_records_kept_aside(tiny_data, tmp_path,
                                                                                                capsys):  # fmt: skip
    out, settings = tmp_path / "run", {"train.max_steps": 2, "checkpoint.every_steps": 0}
    # a NaN loss at step 1 stops the run after config.yaml and metrics.jsonl are written, before any save
    assert train(out, tiny_data, **settings, **{"debug.fault": "nan"}) == 1
    (failed,) = start_ids(out)
    config = (out / "config.yaml").read_bytes()
    capsys.readouterr()
    assert train(out, tiny_data, **settings) == 0
    (new,) = start_ids(out)
    lines = [line for line in capsys.readouterr().err.splitlines() if "failed-start" in line]
    assert lines == [f"lsvr train: {out} held run {failed}, which saved no checkpoint: its records moved to"
                     f" {out / 'failed-start-1'}; starting run {new}"]  # fmt: skip
    aside = out / "failed-start-1"
    assert start_ids(aside) == [failed] and (aside / "config.yaml").read_bytes() == config
    assert checkpoints.load(checkpoints.find(out))["run_id"] == new
    # the folder with failed-start-1/ is still a run folder: it resumes, and a fresh start is refused
    capsys.readouterr()
    assert train(out, tiny_data, **settings) == 2
    one_line(capsys, "already holds checkpoints")


@pytest.mark.parametrize(("rank", "local_rank", "waits"), [(1, 1, True), (2, 0, False)])
def test_a_refusal_on_another_rank_waits_for_rank_0_or_is_said_with_its_rank(tiny_data, tmp_path, capsys, monkeypatch,
                                                                             rank, local_rank, waits):  # fmt: skip
    """Under torchrun rank 0 says a refusal every rank meets; another rank of its node waits for
    torchrun to stop it (tests/test_distributed.py shows the one line), and says it itself, with
    its rank, only where it is still running after the wait. The first process of another node
    says it at once (its files may differ)."""
    waited = as_rank(monkeypatch, rank, local_rank)
    capsys.readouterr()
    assert train(tmp_path / "run", tiny_data, **{"data.holdout": 160}) == 2
    one_line(capsys, f"lsvr train: error: rank {rank}: data.holdout=160 must be between 1 and 159")
    assert waited == ([True] if waits else []) and not (tmp_path / "run").exists()
