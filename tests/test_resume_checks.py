"""A resume continues only what it can continue: the same classes (in order), images,
crop and normalisation; what may change is said. A validation set that does not match
the training set is named field by field. An epoch stopped on its last step is validated."""

import json
import os
import shutil
import signal

import pytest
from tests.support import CONFIG, cli, sets

from lsvr.config_file import load_config
from lsvr.runs import checkpoints
from lsvr.runs.metrics import read_metrics
from lsvr.train.engine import train


def run(out, data, *args, **extra) -> int:
    return cli("train", CONFIG, "--out", out, *args, *sets(data, **extra))


@pytest.fixture(scope="module")
def started(tiny_data, tmp_path_factory):
    """A run of 2 steps on the tiny set (10 classes '0'..'9', 32x32 grey, channel-normalised)."""
    out = tmp_path_factory.mktemp("started") / "run"
    assert run(out, tiny_data, **{"train.max_steps": 2}) == 0
    return out


def test_a_dataset_with_the_classes_in_another_order_is_refused(started, tiny_data, tmp_path, capsys):
    shuffled = tmp_path / "shuffled"
    shutil.copytree(tiny_data, shuffled)
    meta = json.loads((shuffled / "meta.json").read_text())
    meta["classes"] = meta["classes"][::-1]
    (shuffled / "meta.json").write_text(json.dumps(meta))
    saved = (started / "checkpoints" / "latest").read_text()
    capsys.readouterr()
    assert run(started, shuffled, "--resume", "auto", **{"train.max_steps": 4}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{shuffled}: does not fit the checkpoint" in err
    assert "classes: the same 10 names in another order (at index 0: checkpoint '0', dataset '9'" in err
    assert (started / "checkpoints" / "latest").read_text() == saved  # nothing trained, nothing rewritten
    assert checkpoints.load(checkpoints.find(started))["classes"][0] == "0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data.crop": 24}, "data.crop: checkpoint 28, now 24"),
        ({"data.normalize": "mean_image"}, "data.normalize: checkpoint 'channel', now 'mean_image'"),
        ({"optim.name": "adamw"}, "holds the optimizer state of optim.name=sgd; this config has optim.name=adamw"),
    ],
)
def test_another_crop_normalisation_or_optimizer_is_refused_naming_both(started, tiny_data, capsys, change, message):
    capsys.readouterr()
    assert run(started, tiny_data, "--resume", "auto", **{"train.max_steps": 4, **change}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.slow
def test_precision_accumulation_and_seed_changes_are_said(started, tiny_data, tmp_path, capsys):
    fork = tmp_path / "fork"  # a new run from the checkpoint, so that `started` stays at step 2
    change = {"train.max_steps": 3, "train.precision": "bf16", "train.accumulate": 2, "train.seed": 1}
    capsys.readouterr()
    assert run(fork, tiny_data, "--resume", started, **change) == 0
    err = capsys.readouterr().err
    assert (
        "lsvr train: a new run from the checkpoint with settings changed from the checkpoint's: train.max_steps"
        " 2 -> 3, train.seed 0 -> 1 (another epoch order and augmentation), train.precision fp32 -> bf16,"
        " train.accumulate 1 -> 2\n"
    ) in err


def test_a_validation_set_that_does_not_match_names_the_field_and_both_values(tiny_data, tmp_path, capsys):
    rgb = tmp_path / "rgb"
    assert cli("prepare", tiny_data.parent, rgb, "--size", "32", "--channels", "3", "--no-progress") == 0
    capsys.readouterr()
    assert run(tmp_path / "run", tiny_data, **{"data.val": rgb}) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"lsvr train: error: {rgb}: does not match the training set: channels: training set 1,"
        " validation set 3 (prepare with --channels 1)"
    )


@pytest.mark.slow
def test_an_epoch_stopped_on_its_last_step_is_validated_on_resume(tiny_data, tmp_path):
    out = tmp_path / "run"
    # data.holdout=32 leaves 128 images: 4 steps of 32 an epoch. SIGTERM after step 3 is
    # seen in step 4's check: the stop (and its checkpoint) falls on the epoch's last step.
    values = dict(a.split("=", 1) for a in sets(tiny_data, **{"data.holdout": 32, "train.epochs": 2})[1::2])
    overrides = [f"{k}={v}" for k, v in values.items()]
    cfg = load_config(CONFIG, overrides)

    def sigterm_after_step_3(step, model, env):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    summary = train(cfg, out=out, on_step=sigterm_after_step_3)
    assert summary["stopped"] == "SIGTERM"
    assert checkpoints.load(checkpoints.find(out))["loader"]["step"] == 4  # the epoch's last step
    assert not [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "val"]
    assert run(out, tiny_data, "--resume", "auto", **{"data.holdout": 32, "train.epochs": 2}) == 0
    val = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "val"]
    assert [(r["epoch"], r["step"]) for r in val] == [(1, 4), (2, 8)]
