"""ResNet and VGG in torchvision's layout: counts, key names and shapes, init, forward, FLOPs.

The counts are torchvision's published ones (its models' docs, `num_params`); the GFLOPS it
quotes are multiply-adds. Counts, keys and FLOPs are taken on the meta device: no memory, no
arithmetic, so the 60-138 M parameter models cost milliseconds here.
"""

import json

import pytest
import torch
from tests.support import cli
from torch import nn

from lsvr.errors import InputError
from lsvr.models import resnet
from lsvr.models.registry import IMAGENET_MEAN, MODELS, build_model, count_parameters, forward_macs, model_spec
from lsvr.models.weights import load_matching, read_state_dict

TORCHVISION_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
}
# torchvision's "GFLOPS" (multiply-adds) at 224 px.
TORCHVISION_GMACS = {"resnet18": 1.81, "resnet50": 4.09, "vgg16": 15.47}


def _meta(name: str, *, num_classes: int = 1000, crop: int = 224) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, num_classes=num_classes, in_channels=3, crop=crop, dropout=0.5)


@pytest.mark.parametrize(("name", "count"), TORCHVISION_COUNTS.items())
def test_parameter_counts_equal_torchvisions(name, count):
    assert count_parameters(_meta(name)) == count


def test_resnet50_keys_and_shapes_are_torchvisions():
    state = _meta("resnet50").state_dict()
    assert len(state) == 320  # 161 parameters, 53 BatchNorms x 3 buffers
    assert list(state)[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert list(state)[-2:] == ["fc.weight", "fc.bias"]
    shapes = {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.running_mean": (256,),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer3.5.bn3.num_batches_tracked": (),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fc.weight": (1000, 2048),
        "fc.bias": (1000,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert "layer3.6.conv1.weight" not in state  # 3, 4, 6, 3 blocks


def test_resnet_is_v1_5_with_the_stride_on_the_3x3():
    model = _meta("resnet50")
    first = model.layer2[0]
    assert (first.conv1.stride, first.conv2.stride, first.downsample[0].stride) == ((1, 1), (2, 2), (2, 2))
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer1[0].conv2.stride == (1, 1)
    assert _meta("resnet18").layer1[0].downsample is None  # 64 -> 64: no projection


def test_vgg_keys_follow_the_flat_features_sequential():
    plain, bn = _meta("vgg16").state_dict(), _meta("vgg16_bn").state_dict()
    assert tuple(plain["features.28.weight"].shape) == (512, 512, 3, 3)  # the 13th conv
    assert tuple(bn["features.40.weight"].shape) == (512, 512, 3, 3)
    assert tuple(bn["features.41.running_var"].shape) == (512,)
    for state in (plain, bn):
        assert tuple(state["classifier.0.weight"].shape) == (4096, 25088)
        assert tuple(state["classifier.3.weight"].shape) == (4096, 4096)
        assert tuple(state["classifier.6.bias"].shape) == (1000,)
    assert _meta("vgg16").classifier[2].p == 0.5


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_forward_at_64_px(channels):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, in_channels=channels, crop=64, dropout=0.0)
    assert model(torch.randn(2, channels, 64, 64)).shape == (2, 10)


@pytest.mark.slow  # vgg11_bn's 129 M parameters take about 4 s to initialise here
@pytest.mark.parametrize("channels", [1, 3])
def test_vgg11_bn_forward_at_64_px(channels):
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=10, in_channels=channels, crop=64, dropout=0.2)
    assert model.classifier[2].p == 0.2
    assert model(torch.randn(2, channels, 64, 64)).shape == (2, 10)
    assert abs(model.classifier[0].weight.std().item() - 0.01) < 1e-4  # torchvision's N(0, 0.01)


def test_vgg_refuses_a_crop_its_pools_cannot_take():
    with pytest.raises(InputError, match="at least 32"):
        build_model("vgg11", num_classes=10, in_channels=3, crop=28, dropout=0.5)


def test_resnet_init_is_torchvisions():
    torch.manual_seed(0)
    model = resnet.resnet18()
    fan_out = 64 * 7 * 7  # kaiming_normal_, mode fan_out, ReLU gain
    assert abs(model.conv1.weight.std().item() - (2 / fan_out) ** 0.5) < 0.02 * (2 / fan_out) ** 0.5
    assert torch.all(model.layer1[0].bn2.weight == 1) and torch.all(model.layer1[0].bn2.bias == 0)


@pytest.mark.slow  # over half a second on 2 cores
def test_zero_init_residual_zeroes_each_blocks_last_gamma():
    basic = resnet.resnet18(num_classes=10, zero_init_residual=True)
    for block in (*basic.layer1, *basic.layer4):
        assert torch.all(block.bn2.weight == 0) and torch.all(block.bn1.weight == 1)
    bottleneck = resnet.resnet50(num_classes=10, zero_init_residual=True)
    for block in (*bottleneck.layer1, *bottleneck.layer3):
        assert torch.all(block.bn3.weight == 0) and torch.all(block.bn2.weight == 1)
    assert torch.all(bottleneck.layer1[0].downsample[1].weight == 1)  # the shortcut's BN is not a block's last


@pytest.mark.slow  # over half a second on 2 cores
def test_a_saved_state_dict_loads_strictly_into_another_instance(tmp_path):
    torch.manual_seed(0)
    source = resnet.resnet18(num_classes=10).eval()
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    state = read_state_dict(path)  # model.init_from's reader
    torch.manual_seed(1)
    target = resnet.resnet18(num_classes=10).eval()
    assert load_matching(target, state, source=str(path)) == []
    target.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(source(x), target(x))
    other = resnet.resnet18(num_classes=7)  # another class count: the head keeps its init
    assert load_matching(other, state, source=str(path)) == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize(("name", "gmacs"), TORCHVISION_GMACS.items())
def test_forward_macs_match_torchvisions_gflops(name, gmacs):
    macs = forward_macs(_meta(name), crop=224)
    assert abs(macs / 1e9 - gmacs) <= 0.01 * gmacs


def test_models_declare_their_input():
    tv = model_spec("resnet50")
    assert (tv.default_crop, tv.eval_resize, tv.eval_crop, tv.interpolation) == (224, 256, 224, "bilinear")
    assert (tv.normalize, tv.mean) == ("channel", IMAGENET_MEAN)
    paper = model_spec("alexnet")
    assert (paper.default_crop, paper.eval_crop, paper.eval_resize, paper.normalize) == (227, 227, None, "mean_image")
    for name, spec in MODELS.items():
        assert spec.interpolation in ("bilinear", "bicubic") and spec.normalize in ("mean_image", "channel"), name
        assert (spec.mean is None) == (spec.std is None), name


@pytest.mark.slow  # every model built and counted, twice: about 4 s each here
def test_lsvr_models_lists_every_model_with_its_multiply_adds(capsys):
    assert cli("models") == 0
    out = capsys.readouterr().out.splitlines()
    assert "multiply-adds" in out[0] and "2 FLOPs per multiply-add" in out[1]
    rows = {line.split()[0]: line.split() for line in out[3:]}
    assert list(rows) == list(MODELS)
    assert rows["resnet50"][1:3] == ["25,557,032", "4.09"] and rows["vgg16"][1:3] == ["138,357,544", "15.47"]
    assert cli("models", "--json") == 0
    by_name = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert by_name["resnet18"]["gmacs"] == pytest.approx(1.81, rel=0.01)
    assert by_name["vgg16_bn"]["eval_resize"] == 256 and by_name["alexnet"]["normalize"] == "mean_image"
