"""model.zero_init_residual and model.dropout: what each model takes, and what it refuses."""

import pytest
from tests.support import one_line, train
from torch import nn

from lsvr.config_file import load_config
from lsvr.errors import InputError
from lsvr.models import resnet
from lsvr.models.registry import MODELS, build_model


def test_zero_init_residual_zeroes_every_blocks_last_batchnorm():
    zeroed = build_model("resnet18", num_classes=10, in_channels=3, crop=32, zero_init_residual=True)
    blocks = [m for m in zeroed.modules() if isinstance(m, resnet.BasicBlock)]
    assert len(blocks) == 8 and all(not b.bn2.weight.detach().any() for b in blocks)
    others = [m for m in zeroed.modules() if isinstance(m, nn.BatchNorm2d) and all(m is not b.bn2 for b in blocks)]
    assert len(others) == 12 and all(bool((m.weight.detach() == 1).all()) for m in others)  # start as usual


def test_zero_init_residual_on_a_model_without_residual_blocks_is_refused():
    with pytest.raises(InputError) as refused:
        build_model("vgg11", num_classes=10, in_channels=3, crop=32, zero_init_residual=True)
    message = str(refused.value)
    assert message.startswith("model.zero_init_residual: vgg11 has no residual blocks; it applies to resnet18,")
    assert [n for n in MODELS if n in message.split("applies to ")[1]] == [n for n in MODELS if "resnet" in n]


def test_zero_init_residual_in_a_run_on_alexnet_small_exits_2_naming_the_key(tiny_data, tmp_path, capsys):
    capsys.readouterr()
    assert train(tmp_path / "run", tiny_data, **{"model.zero_init_residual": "true", "train.max_steps": 1}) == 2
    one_line(capsys, "model.zero_init_residual: alexnet_small has no residual blocks; it applies to resnet18")


def _dropouts(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


def test_dropout_defaults_to_each_models_own_and_an_explicit_value_wins():
    assert load_config(None).model.dropout is None
    assert _dropouts(build_model("alexnet_small", num_classes=10, in_channels=1, crop=28)) == [0.5, 0.5]
    assert _dropouts(build_model("googlenet", num_classes=10, in_channels=3, crop=32)) == [0.2]
    assert _dropouts(build_model("alexnet_small", num_classes=10, in_channels=1, crop=28, dropout=0.0)) == [0.0, 0.0]
    assert {name for name, spec in MODELS.items() if spec.dropout is None} == {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vit_b_16", "vit_s_16", "convnext_tiny"
    }  # fmt: skip
    with pytest.raises(InputError, match=r"config: model.dropout must be in \[0, 1\), got 1.5"):
        load_config(None, ["model.dropout=1.5"])
