"""model.blurpool (models/blurpool.py): the kernel, where it goes, and weights that load both ways."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.support import one_line, train

from lsvr.errors import InputError
from lsvr.models.blurpool import BlurConv2d, applies, binomial_kernel
from lsvr.models.registry import MODELS, build_model
from lsvr.models.weights import load_matching


def test_the_kernel_is_the_3x3_binomial_per_channel():
    kernel = binomial_kernel(4)
    assert kernel.shape == (4, 1, 3, 3)
    expected = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    assert all(torch.equal(kernel[c, 0], expected) for c in range(4))


@pytest.mark.slow
def test_a_blurred_conv_is_the_conv_of_the_blurred_input():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 8, 3, stride=2, padding=1)
    x = torch.randn(2, 16, 9, 9)
    padded = F.pad(x, (1, 1, 1, 1))  # zero padding, as FFCV's
    weights = {(0, 0): 1, (0, 1): 2, (0, 2): 1, (1, 0): 2, (1, 1): 4, (1, 2): 2, (2, 0): 1, (2, 1): 2, (2, 2): 1}
    blurred = sum(w * padded[:, :, i : i + 9, j : j + 9] for (i, j), w in weights.items()) / 16
    torch.testing.assert_close(BlurConv2d(conv)(x), conv(blurred))


def build(name: str, crop: int = 64, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=10, in_channels=3, crop=crop, **options)


@pytest.mark.parametrize("name", ["resnet18", pytest.param("convnext_tiny", marks=pytest.mark.slow)])
def test_blurpool_keeps_keys_shapes_and_output_shape(name):
    plain, blurred = build(name), build(name, blurpool=True)
    a, b = plain.state_dict(), blurred.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # the same init, no new keys
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in blurred.named_parameters()]
    assert sum(isinstance(m, BlurConv2d) for m in blurred.modules()) == sum(applies(m) for m in plain.modules())
    x = torch.randn(2, 3, 64, 64)
    assert blurred.eval()(x).shape == plain.eval()(x).shape == (2, 10)


def test_weights_load_into_and_out_of_a_blurred_model():
    plain, blurred = build("resnet18"), build("resnet18", blurpool=True)
    for p in plain.parameters():
        torch.nn.init.normal_(p)
    assert load_matching(blurred, plain.state_dict(), source="plain") == []  # model.init_from's path
    assert all(torch.equal(v, blurred.state_dict()[k]) for k, v in plain.state_dict().items())
    with torch.no_grad():
        for p in blurred.parameters():
            p.add_(1.0)
    plain.load_state_dict(blurred.state_dict())  # a blurred run's checkpoint loads into the plain model
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in blurred.state_dict().items())


@pytest.mark.slow
def test_only_resnets_and_convnext_have_convs_to_blur():
    with torch.device("meta"):
        for name, spec in MODELS.items():
            model = build_model(name, num_classes=10, in_channels=3, crop=spec.default_crop)
            count = sum(applies(m) for m in model.modules())
            assert (count > 0) == (name.startswith("resnet") or name == "convnext_tiny"), name


@pytest.mark.slow
def test_blurpool_on_a_vit_is_refused():
    with pytest.raises(InputError) as err, torch.device("meta"):
        build_model("vit_s_16", num_classes=10, in_channels=3, crop=224, blurpool=True)
    assert str(err.value).startswith("model.blurpool: vit_s_16 has no strided conv on >= 16 channels")


def test_blurpool_in_a_run_on_alexnet_small_exits_2_naming_the_key(tiny_data, tmp_path, capsys):
    assert train(tmp_path / "run", tiny_data, **{"model.blurpool": "true", "train.max_steps": 1}) == 2
    one_line(capsys, "model.blurpool: alexnet_small has no strided conv", "resnet* and convnext_tiny")
