import pytest
from tests.support import ROOT

from lsvr.config import Config
from lsvr.config_file import load_config, valid_keys
from lsvr.errors import InputError


def test_presets_load_and_overrides_apply():
    cfg = load_config(ROOT / "configs" / "alexnet_imagenet.yaml", ["optim.lr_steps=[25,45]", "train.epochs=65"])
    assert cfg.optim.lr_steps == [25, 45] and cfg.train.epochs == 65
    assert (cfg.train.global_batch, cfg.optim.lr, cfg.data.crop, cfg.model.name) == (256, 0.01, 227, "alexnet")
    for name in ("demo", "debug", "fashion_mnist", "alexnet_imagenet_2gpu", "fashion_mnist_fast", "fashion_mnist_best"):
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
        ("optim.learning_rate=0.1", r"unknown key optim.learning_rate \(`lsvr train --keys` lists every key\)"),
        ("nosuch.key=1", "unknown section"),
        ("train.epochs=ten", "train.epochs must be int"),
        ("train.epochs=2.5", "train.epochs must be int"),
        ("optim.lr_steps=[a]", r"optim.lr_steps\[\] must be float"),
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


def test_every_choice_key_is_checked_from_its_literal_type():
    import typing

    from lsvr import config

    found = {key: allowed for key, _, allowed in config._choice_fields(Config())}
    assert found["train.precision"] == ("fp32", "bf16", "fp16") and found["data.normalize"] == ("mean_image", "channel")
    assert len(found) == 16  # every choice key, debug.fault and debug.point included
    for key, allowed in found.items():
        section, name = key.split(".")
        assert typing.get_args(typing.get_type_hints(type(getattr(Config(), section)))[name]) == allowed
        load_config(None, [f"{key}={allowed[-1]}"])
        with pytest.raises(InputError, match=f"config: {key} must be one of {', '.join(allowed)}; got 'nope'"):
            load_config(None, [f"{key}=nope"])
        with pytest.raises(InputError, match=f"config: {key} must be str, got 3"):
            load_config(None, [f"{key}=3"])


def test_cli_choices_come_from_the_config_types():
    from lsvr.cli import build_parser
    from lsvr.config import CompileMode, Device, Precision, choices

    bench = build_parser().parse_args(
        ["bench", "train", "--device", "cpu", "--precision", "bf16", "--compile", "default"]
    )
    assert (bench.device, bench.precision, bench.compile) == ("cpu", "bf16", "default")
    assert choices(Device) == ("auto", "cpu", "cuda") and "fp16" in choices(Precision)
    assert "reduce-overhead" in choices(CompileMode)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "ckpt", "data", "--device", "tpu"])


@pytest.mark.parametrize(
    ("argv", "config", "overrides", "out"),
    [
        (["CFG", "--set", "a.b=1", "c.d=2", "--out", "X"], "CFG", ["a.b=1", "c.d=2"], "X"),
        (["CFG", "--set", "a.b=1", "--set", "c.d=2"], "CFG", ["a.b=1", "c.d=2"], None),
        (["--set", "a.b=1", "CFG"], "CFG", ["a.b=1"], None),  # as before --set took several items
        (["--set", "a.b=1", "c.d=2", "CFG", "--out", "X"], "CFG", ["a.b=1", "c.d=2"], "X"),
        (["--out", "X", "--set", "a.b=1", "--set", "c.d=2", "CFG"], "CFG", ["a.b=1", "c.d=2"], "X"),
    ],
)
def test_set_takes_several_items_and_a_config_after_them(argv, config, overrides, out):
    from lsvr.cli import build_parser
    from lsvr.cli_train import train_config_args

    args = build_parser().parse_args(["train", *argv])
    assert train_config_args(args) == (config, overrides) and args.out == out


def test_a_second_path_among_the_items_is_refused_naming_the_config():
    from lsvr.cli import build_parser
    from lsvr.cli_train import train_config_args

    for argv, stray, config in ((["CFG", "--set", "a.b=1", "stray"], "stray", "CFG"),
                                (["--set", "a.b=1", "CFG", "CFG2"], "CFG", "CFG2")):  # fmt: skip
        with pytest.raises(InputError, match=rf"--set '{stray}': expected section.key=value \(CONFIG is {config}"):
            train_config_args(build_parser().parse_args(["train", *argv]))


def test_set_with_several_items_reaches_the_config(capsys):
    from tests.support import cli

    debug = ROOT / "configs" / "debug.yaml"
    assert cli("train", debug, "--set", "train.epochs=2", "train.threads=-3") == 2
    assert "config: train.threads must be >= 0, got -3" in capsys.readouterr().err
    assert cli("train", debug, "--set", "train.epochs=2", "stray") == 2
    assert "--set 'stray': expected section.key=value" in capsys.readouterr().err
