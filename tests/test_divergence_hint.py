"""A run stopped by a non-finite loss says which settings are known to cause it."""

import pytest
from tests.support import CONFIG, cli, sets

from lsvr.config_file import load_config


@pytest.mark.slow
def test_alexnet_small_with_mean_image_at_lr_0_01_stops_naming_the_settings(tiny_data, tmp_path, capsys):
    args = sets(tiny_data, **{"data.normalize": "mean_image", "optim.lr": 0.01, "model.dropout": 0.0})
    assert cli("train", CONFIG, "--out", tmp_path / "run", *args) == 1  # diverges for real: nothing injected
    err = capsys.readouterr().err
    assert "lsvr train: stopped: non-finite loss at step" in err
    assert "alexnet_small with data.normalize=mean_image at optim.lr>=0.005 is known to diverge" in err
    assert "use data.normalize=channel, or optim.lr=0.001" in err


def test_other_settings_get_the_general_advice():
    from lsvr.train.health import nonfinite_hint

    cfg = load_config(CONFIG, ["data.normalize=channel"])
    assert nonfinite_hint(cfg) == "; a lower optim.lr, guard.clip_norm or data.normalize=channel may help"


def test_a_stop_before_any_save_says_no_checkpoint_was_kept(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", CONFIG, "--out", run, *sets(tiny_data, **{"debug.fault": "nan", "debug.step": 1})) == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 1; no checkpoint was saved before it" in err
    assert not list((run / "checkpoints").glob("step-*.pt"))
