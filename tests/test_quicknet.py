"""quicknet: the small airbench-layout CNN the fast Fashion-MNIST recipe trains."""

from __future__ import annotations

import pytest
import torch

from lsvr.errors import InputError
from lsvr.models.registry import build_model, forward_macs


@pytest.mark.parametrize("side", [8, 16, 20, 28, 32, 64])
def test_any_side_from_8_px_gives_one_logit_per_class(side):
    model = build_model("quicknet", num_classes=10, in_channels=1, crop=28)
    assert model(torch.zeros(2, 1, side, side)).shape == (2, 10)


@pytest.mark.slow  # FlopCounterMode's first import takes seconds
def test_width_scales_every_stage_in_multiples_of_8():
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    plain = build_model("quicknet", num_classes=10, in_channels=3, crop=32)
    wide = build_model("quicknet", num_classes=10, in_channels=3, crop=32, width=2.0)
    assert convs(plain) == [16, 32, 32, 64, 64, 128, 128]
    assert convs(wide) == [2 * c for c in convs(plain)]
    assert forward_macs(wide, crop=32) > 3 * forward_macs(plain, crop=32)


def test_a_side_below_8_is_refused_in_one_line():
    with pytest.raises(InputError, match="at least 8"):
        build_model("quicknet", num_classes=10, in_channels=1, crop=6)


def test_blurpool_is_refused_having_no_strided_conv():
    with pytest.raises(InputError, match=r"model\.blurpool: quicknet"):
        build_model("quicknet", num_classes=10, in_channels=1, crop=28, blurpool=True)
