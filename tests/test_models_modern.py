"""googlenet, vit_b_16 / vit_s_16 and convnext_tiny: torchvision's counts, key names and shapes, forward
shapes at small crops, init, and the parts written here (StochasticDepth, transform_input).

Counts and keys are taken on the meta device (no memory, no init cost); the numbers are torchvision's
published ones (its model docs' `num_params`), the keys its state_dict names.
"""

import pytest
import torch

from lsvr.models.convnext import ConvNeXt, StochasticDepth, convnext_tiny
from lsvr.models.googlenet import GoogLeNetOutputs, googlenet
from lsvr.models.vit import vit_b_16, vit_s_16

BUILDERS = {"googlenet": googlenet, "vit_b_16": vit_b_16, "vit_s_16": vit_s_16, "convnext_tiny": convnext_tiny}


def _meta(name: str, **kw) -> torch.nn.Module:
    with torch.device("meta"):
        return BUILDERS[name](num_classes=1000, in_channels=3, crop=224, dropout=0.5, **kw)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "kw", "count"),
    [
        ("googlenet", {}, 6_624_904),  # torchvision's published count, without the auxiliary classifiers
        ("googlenet", {"aux_logits": True}, 13_004_888),
        ("vit_b_16", {}, 86_567_656),
        ("vit_s_16", {}, 22_050_664),  # timm's vit_small_patch16_224 count
        ("convnext_tiny", {}, 28_589_128),
    ],
)
def test_parameter_counts_at_1000_classes(name, kw, count):
    assert _count(_meta(name, **kw)) == count


ANCHORS = {
    "googlenet": {
        "conv1.conv.weight": (64, 3, 7, 7),
        "conv1.bn.running_var": (64,),
        "conv3.conv.weight": (192, 64, 3, 3),
        "inception3a.branch2.1.conv.weight": (128, 96, 3, 3),
        "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),  # torchvision's 3x3 in the "5x5" branch
        "inception5b.branch4.1.conv.weight": (128, 832, 1, 1),
        "inception5b.branch4.1.bn.num_batches_tracked": (),
        "fc.weight": (1000, 1024),
    },
    "vit_b_16": {
        "class_token": (1, 1, 768),
        "conv_proj.weight": (768, 3, 16, 16),
        "encoder.pos_embedding": (1, 197, 768),
        "encoder.layers.encoder_layer_0.self_attention.in_proj_weight": (2304, 768),
        "encoder.layers.encoder_layer_0.self_attention.out_proj.weight": (768, 768),
        "encoder.layers.encoder_layer_11.ln_2.bias": (768,),
        "encoder.layers.encoder_layer_11.mlp.0.weight": (3072, 768),
        "encoder.layers.encoder_layer_11.mlp.3.weight": (768, 3072),
        "encoder.ln.weight": (768,),
        "heads.head.weight": (1000, 768),
    },
    "convnext_tiny": {
        "features.0.0.weight": (96, 3, 4, 4),
        "features.0.1.weight": (96,),
        "features.1.0.block.0.weight": (96, 1, 7, 7),
        "features.1.0.block.2.weight": (96,),
        "features.1.0.block.3.weight": (384, 96),
        "features.2.0.weight": (96,),
        "features.2.1.weight": (192, 96, 2, 2),
        "features.5.8.block.5.weight": (384, 1536),
        "features.7.2.layer_scale": (768, 1, 1),
        "classifier.0.weight": (768,),
        "classifier.2.weight": (1000, 768),
    },
}
KEY_COUNTS = {"googlenet": 344, "vit_b_16": 152, "convnext_tiny": 182}


@pytest.mark.parametrize("name", list(ANCHORS))
def test_key_names_and_shapes(name):
    state = _meta(name).state_dict()
    for key, shape in ANCHORS[name].items():
        assert tuple(state[key].shape) == shape, key
    assert len(state) == KEY_COUNTS[name]


def test_googlenet_aux_keys_only_with_aux_logits():
    plain, aux = _meta("googlenet").state_dict(), _meta("googlenet", aux_logits=True).state_dict()
    assert not any(k.startswith("aux") for k in plain)
    assert tuple(aux["aux1.fc1.weight"].shape) == (1024, 2048)
    assert tuple(aux["aux2.conv.conv.weight"].shape) == (128, 528, 1, 1)
    assert set(aux) - set(plain) == {k for k in aux if k.startswith(("aux1.", "aux2."))}


def test_crop_sets_the_position_embedding_and_a_bad_crop_is_a_value_error():
    with torch.device("meta"):
        big = vit_b_16(num_classes=10, in_channels=3, crop=384, dropout=0.0)
        assert big.encoder.pos_embedding.shape == (1, 577, 768)  # 24 * 24 patches + the class token
        for crop in (33, 8, 100):
            with pytest.raises(ValueError, match=f"crop {crop} does not divide into 16 px patches"):
                vit_b_16(num_classes=10, in_channels=3, crop=crop, dropout=0.0)
        with pytest.raises(ValueError, match="too small for googlenet"):
            googlenet(num_classes=10, in_channels=3, crop=14, dropout=0.2)
        with pytest.raises(ValueError, match="too small for convnext_tiny"):
            convnext_tiny(num_classes=10, in_channels=3, crop=31, dropout=0.0)
        with pytest.raises(ValueError, match="transform_input"):
            googlenet(num_classes=10, in_channels=1, crop=64, dropout=0.2, transform_input=True)


SMALL = [("googlenet", 64), ("vit_s_16", 32), ("convnext_tiny", 32)]


@pytest.mark.slow  # over half a second on 2 cores
@pytest.mark.parametrize(("name", "crop"), SMALL)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_shape_at_small_crops(name, crop, in_channels):
    torch.manual_seed(0)
    model = BUILDERS[name](num_classes=10, in_channels=in_channels, crop=crop, dropout=0.2)
    x = torch.randn(2, in_channels, crop, crop)
    for train in (False, True):
        out = model.train(train)(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("in_channels", [1, 3])
def test_vit_b_16_forward_at_crop_32(in_channels):
    model = vit_b_16(num_classes=10, in_channels=in_channels, crop=32, dropout=0.0)
    for train in (False, True):
        assert model.train(train)(torch.randn(2, in_channels, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="built for 32 px"):
        model(torch.randn(1, in_channels, 48, 48))


def test_googlenet_aux_outputs_in_training_only():
    torch.manual_seed(0)
    model = googlenet(num_classes=10, in_channels=3, crop=64, dropout=0.2, aux_logits=True)
    seen = {}
    for name in ("aux1", "aux2"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, o))
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert isinstance(out, GoogLeNetOutputs) and [t.shape for t in out] == [(2, 10)] * 3
    assert out.aux_logits2 is seen["aux2"] and out.aux_logits1 is seen["aux1"]  # torchvision's order
    assert isinstance(model.eval()(torch.randn(2, 3, 64, 64)), torch.Tensor)


def test_googlenet_transform_input_maps_imagenet_normalisation_to_half_scale():
    """torchvision's weights saw (x - 0.5) / 0.5: transform_input on ImageNet-normalised input gives
    the same logits as the plain model on (x - 0.5) / 0.5."""
    torch.manual_seed(0)
    plain = googlenet(num_classes=10, in_channels=3, crop=64, dropout=0.2).eval()
    moved = googlenet(num_classes=10, in_channels=3, crop=64, dropout=0.2, transform_input=True).eval()
    moved.load_state_dict(plain.state_dict())
    pixels = torch.rand(2, 3, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    expected = plain((pixels - 0.5) / 0.5)
    assert torch.allclose(moved((pixels - mean) / std), expected, atol=1e-5 * expected.abs().max().item())


@pytest.mark.slow  # over half a second on 2 cores
@pytest.mark.parametrize(("name", "crop"), SMALL)
def test_state_dict_round_trip_strict(name, crop):
    torch.manual_seed(0)
    first = BUILDERS[name](num_classes=10, in_channels=3, crop=crop, dropout=0.2).eval()
    torch.manual_seed(1)
    second = BUILDERS[name](num_classes=10, in_channels=3, crop=crop, dropout=0.2).eval()
    second.load_state_dict(first.state_dict(), strict=True)
    x = torch.randn(2, 3, crop, crop)
    assert torch.equal(first(x), second(x))


@pytest.mark.slow  # over half a second on 2 cores
def test_init_as_torchvision():
    torch.manual_seed(0)
    g = googlenet(num_classes=10, in_channels=3, crop=64, dropout=0.2)
    w = g.inception4e.branch2[1].conv.weight
    assert abs(w.std().item() - 0.01) < 1e-3 and torch.all(g.inception4e.branch2[1].bn.weight == 1)
    assert abs(g.fc.weight.std().item() - 0.01) < 1e-3  # biases keep torch's default, as in torchvision
    c = convnext_tiny(num_classes=10, in_channels=3, crop=32, dropout=0.0)
    lin = c.features[5][0].block[3]
    assert abs(lin.weight.std().item() - 0.02) < 1e-3 and torch.all(lin.bias == 0)
    assert lin.weight.abs().max().item() <= 2.0 and torch.all(c.features[7][2].layer_scale == 1e-6)
    drops = [m.stochastic_depth.p for m in c.modules() if hasattr(m, "stochastic_depth")]
    assert len(drops) == 18 and drops[0] == 0.0 and drops[-1] == pytest.approx(0.1)
    assert drops == pytest.approx([0.1 * i / 17 for i in range(18)])
    v = vit_s_16(num_classes=10, in_channels=3, crop=32, dropout=0.0)
    assert torch.all(v.heads.head.weight == 0) and torch.all(v.class_token == 0)
    assert abs(v.encoder.pos_embedding.std().item() - 0.02) < 3e-3
    assert abs(v.conv_proj.weight.std().item() - (1 / (3 * 16 * 16)) ** 0.5) < 2e-3


def test_stochastic_depth_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    drop = StochasticDepth(0.5, "row")
    x = torch.ones(4000, 3, 2, 2)
    y = drop(x)
    per_sample = y.flatten(1)
    kept = per_sample[:, 0] > 0
    assert torch.all(per_sample[kept] == 2.0) and torch.all(per_sample[~kept] == 0.0)  # survivors scaled 1/(1-p)
    assert 0.45 < kept.float().mean().item() < 0.55
    assert torch.equal(drop.eval()(x), x)
    assert torch.all(StochasticDepth(1.0, "row")(x) == 0)
    batch = StochasticDepth(0.5, "batch")(x)
    assert batch.unique().numel() == 1
    with pytest.raises(ValueError, match="within"):
        StochasticDepth(1.5, "row")


def test_convnext_stage_table_builds_other_depths():
    with torch.device("meta"):
        small = ConvNeXt(stages=((16, 1), (32, 2)), num_classes=5, in_channels=3, stochastic_depth_prob=0.2)
    assert [type(m).__name__ for m in small.features] == ["Sequential"] * 4
    assert small.classifier[2].in_features == 32


@pytest.mark.parametrize(
    ("name", "gmacs", "eval_resize"), [("googlenet", 1.50, 256), ("vit_b_16", 17.56, 256), ("convnext_tiny", 4.46, 236)]
)
def test_registered_with_torchvision_multiply_adds_and_eval_resize(name, gmacs, eval_resize):
    """torchvision's published GFLOPS (multiply-adds) and eval resize for these weights."""
    from lsvr.models.registry import build_model, forward_macs, model_spec

    spec = model_spec(name)
    with torch.device("meta"):
        model = build_model(name, num_classes=1000, in_channels=3, crop=spec.default_crop, dropout=0.0)
    assert forward_macs(model, crop=spec.default_crop) / 1e9 == pytest.approx(gmacs, abs=0.01)
    assert (spec.default_crop, spec.eval_resize, spec.eval_crop, spec.normalize) == (224, eval_resize, 224, "channel")
