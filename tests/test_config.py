import pytest
from tests.conftest import ROOT

from lsvr.config import Config, load_config, valid_keys
from lsvr.errors import InputError


def test_presets_load_and_overrides_apply():
    cfg = load_config(ROOT / "configs" / "alexnet_imagenet.yaml", ["optim.lr_steps=[25,45]", "train.epochs=65"])
    assert cfg.optim.lr_steps == [25, 45] and cfg.train.epochs == 65
    assert (cfg.train.global_batch, cfg.optim.lr, cfg.data.crop, cfg.model.name) == (256, 0.01, 227, "alexnet")
    for name in ("demo", "debug", "fashion_mnist", "alexnet_imagenet_2gpu"):
        assert isinstance(load_config(ROOT / "configs" / f"{name}.yaml"), Config)


def test_contract_keys_exist():
    keys = set(valid_keys())
    for key in (
        "model.name model.dropout model.init_from data.train data.val data.crop data.workers data.prefetch "
        "train.global_batch train.epochs train.max_steps train.seed train.precision train.threads "
        "train.accumulate optim.lr optim.lr_steps optim.momentum optim.weight_decay parallel.mode "
        "parallel.average_every parallel.timeout_s parallel.bucket_mb checkpoint.every_steps checkpoint.keep "
        "guard.nonfinite guard.max_skips guard.clip_norm"
    ).split():
        assert key in keys, key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.learning_rate=0.1", "unknown key optim.learning_rate; valid keys: model.name"),
        ("nosuch.key=1", "unknown section"),
        ("train.epochs=ten", "train.epochs must be int"),
        ("train.epochs=2.5", "train.epochs must be int"),
        ("optim.lr_steps=[a]", r"optim.lr_steps\[\] must be int"),
        ("train.precision=fp8", "train.precision must be one of"),
        ("checkpoint.keep=1", "checkpoint.keep must be >= 2"),
        ("optim.lr", "expected section.key=value"),
        ("train.compile=fast", "train.compile must be one of"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(InputError, match=message):
        load_config(None, [override])


def test_cuda_graphs_refuse_gradient_accumulation():
    with pytest.raises(InputError, match="CUDA graphs"):
        load_config(None, ["train.compile=reduce-overhead", "train.accumulate=2"])
    assert load_config(None, ["train.compile=max-autotune-no-cudagraphs", "train.accumulate=2"]).train.accumulate == 2


def test_ints_widen_to_floats_but_bools_are_not_ints():
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(InputError):
        load_config(None, ["train.epochs=true"])


def test_readme_lists_every_key():
    readme = (ROOT / "README.md").read_text()
    missing = [key for key in valid_keys() if f"{key} = " not in readme]
    assert not missing, f"README.md lacks {missing}: paste `lsvr train --keys` into it"
