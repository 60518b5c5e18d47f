"""model.whiten: airbench's first layer, whitening the training images' patches, frozen."""

import pytest
import torch
import torch.nn.functional as F
from tests.support import one_line, train

from lsvr.models.whiten import EPS, whiten
from lsvr.runs import checkpoints


def smooth_images(n: int = 64, side: int = 12) -> torch.Tensor:
    """(n, 1, side, side) images whose neighbouring pixels correlate: noise blurred by a 3x3 box."""
    noise = torch.randn(n, 1, side + 2, side + 2, generator=torch.Generator().manual_seed(0))
    return F.avg_pool2d(noise, 3, stride=1) * 3


def test_whitened_filters_give_uncorrelated_unit_variance_outputs_in_signed_pairs():
    images = smooth_images()
    conv = torch.nn.Conv2d(1, 16, 3, padding=1, bias=False)
    assert whiten(conv, images) == 8  # 9 patch dimensions, 16 filters: the 8 largest directions, each +-
    out = F.conv2d(images.double(), conv.weight.double())  # (N, 16, H', W'): the patches the covariance saw
    flat = out.permute(0, 2, 3, 1).reshape(-1, 16)
    covariance = flat[:, :8].T @ flat[:, :8] / len(flat)
    patches = images.double().unfold(2, 3, 1).unfold(3, 3, 1).reshape(-1, 9)  # any order: only the spectrum counts
    variances = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)[:8]
    assert torch.allclose(covariance, torch.diag(variances / (variances + EPS)), atol=1e-6)
    assert torch.equal(flat[:, 8:], -flat[:, :8])
    assert not conv.weight.requires_grad


def test_filters_beyond_twice_the_patch_dimensions_keep_their_initialisation():
    conv = torch.nn.Conv2d(1, 24, 3, bias=False)
    before = conv.weight.detach().clone()
    assert whiten(conv, smooth_images()) == 9
    assert torch.equal(conv.weight[18:], before[18:]) and not torch.equal(conv.weight[:18], before[:18])


@pytest.mark.slow
def test_a_whitened_run_keeps_its_first_conv_frozen_and_says_so(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    extra = {"model.name": "quicknet", "model.whiten": "true", "model.dropout": 0.0, "train.max_steps": 4}
    assert train(run, tiny_data, **extra) == 0, capsys.readouterr().err[-2000:]
    assert "model.whiten: 16 filters of the first conv from 160 training images, frozen" in capsys.readouterr().err
    first, last = (checkpoints.read(run / "checkpoints" / f"step-0000000{s}.pt").model for s in (2, 4))
    assert torch.equal(first["features.stem.0.weight"], last["features.stem.0.weight"])
    assert not torch.equal(first["fc.weight"], last["fc.weight"])  # the rest trains


def test_whiten_with_init_from_is_refused(tiny_data, tmp_path, capsys):
    extra = {"model.whiten": "true", "model.init_from": tmp_path / "w.pt"}
    assert train(tmp_path / "run", tiny_data, **extra) == 2
    one_line(capsys, "model.whiten would replace the first conv of model.init_from's weights")


@pytest.mark.parametrize("model", ["alexnet_small", "resnet18"])
def test_other_models_whiten_their_first_conv(model):
    from lsvr.models.registry import build_model
    from lsvr.models.whiten import first_conv

    net = build_model(model, num_classes=10, in_channels=1, crop=28)
    conv = first_conv(net)
    assert whiten(conv, smooth_images(8, 28)) == min(conv.out_channels // 2, conv.kernel_size[0] ** 2)
