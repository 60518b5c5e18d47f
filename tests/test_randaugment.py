"""RandAugment (data/randaugment.py): each op against a hand-computed result, the draws from the
keys, the loader's hook, the config's refusals, and a run that resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.support import CONFIG, cli, final_weights, one_line, train

from lsvr.data.dataset import PreparedDataset
from lsvr.data.draws import sample_keys
from lsvr.data.loader import Loader
from lsvr.data.randaugment import (
    OPS,
    RandAugment,
    affine,
    apply_colour,
    equalize,
    geometric_matrix,
    randaugment_for,
    shifted,
    smoothed,
    strength,
)


def image(*, side: int = 8, channels: int = 3, seed: int = 0, count: int = 2) -> torch.Tensor:
    """(count, C, side, side) random uint8 images."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (count, channels, side, side), np.uint8))


def moved(op: str, planes: torch.Tensor, value: float) -> torch.Tensor:
    """One geometric op at one signed strength for every image."""
    values = torch.full((len(planes),), value, dtype=torch.float64)
    return affine(planes, geometric_matrix(op, values, height=planes.shape[2], width=planes.shape[3]))


def test_the_strengths_are_torchvisions_bins_at_magnitude_9():
    at = {op: strength(op, 9, height=224, width=224) for op in OPS}
    assert at["posterize"] == 7.0 and strength("posterize", 0, height=1, width=1) == 8.0
    assert strength("posterize", 30, height=1, width=1) == 4.0
    assert at["solarize"] == pytest.approx(255 - 9 * 8.5)
    assert at["rotate"] == pytest.approx(9.0) and at["shear_x"] == pytest.approx(0.09)
    assert at["brightness"] == pytest.approx(0.27) and at["identity"] == at["equalize"] == 0.0
    assert at["translate_x"] == pytest.approx(150 / 331 * 224 * 0.3)
    assert strength("translate_y", 30, height=100, width=224) == pytest.approx(150 / 331 * 100)


def test_posterize_keeps_the_high_bits_and_solarize_inverts_from_its_threshold():
    planes = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(apply_colour("posterize", planes, torch.tensor([7.0])), planes & 0xFE)
    assert torch.equal(apply_colour("posterize", planes, torch.tensor([4.0])), planes & 0xF0)
    solar = apply_colour("solarize", planes, torch.tensor([178.5]))
    levels = torch.arange(256)
    assert torch.equal(solar.flatten().long(), torch.where(levels >= 179, 255 - levels, levels))


def test_translate_moves_by_whole_pixels_and_fills_zero():
    planes = image()
    right = shifted(planes, torch.tensor([3.7, 3.2]), "translate_x")  # int(3.7) = 3 pixels right
    assert torch.equal(right[..., 3:], planes[..., :5]) and not right[..., :3].any()
    up = shifted(planes, torch.tensor([-2.2, -2.9]), "translate_y")  # int(-2.2) = 2 pixels up
    assert torch.equal(up[:, :, :6], planes[:, :, 2:]) and not up[:, :, 6:].any()
    assert not shifted(planes, torch.tensor([8.0, -9.5]), "translate_x").any()  # moved out of the image


@pytest.mark.parametrize(("op", "values"), [("translate_x", [-30.9, 5.5, 0.7]), ("translate_y", [12.0, -3.3, -0.2])])
def test_translations_as_slices_equal_grid_sample(op, values):
    planes = image(side=24, count=3, seed=5)[:, :, :, :20].contiguous()  # 24 x 20
    matrices = torch.zeros(3, 2, 3, dtype=torch.float64)
    matrices[:, 0, 0] = matrices[:, 1, 1] = 1.0
    matrices[:, 0 if op == "translate_x" else 1, 2] = -torch.tensor(values, dtype=torch.float64).trunc()
    assert torch.equal(shifted(planes, torch.tensor(values), op), grid_sampled(planes, matrices))


def test_rotate_by_90_degrees_is_rot90_and_by_0_the_identity():
    planes = image(side=9)
    assert torch.equal(moved("rotate", planes, 90.0), torch.rot90(planes, 1, dims=(2, 3)))
    assert torch.equal(moved("rotate", planes, -90.0), torch.rot90(planes, -1, dims=(2, 3)))
    assert torch.equal(moved("rotate", planes, 0.0), planes)


def grid_sampled(planes: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """The reference: F.affine_grid + grid_sample (nearest, zeros) on floats, the centred-pixel
    maps brought to affine_grid's units, as torchvision's tensor affine does."""
    n, c, h, w = planes.shape
    theta = matrices.clone()
    theta[:, 0, 1] *= h / w
    theta[:, 1, 0] *= w / h
    theta[:, 0, 2] *= 2 / w
    theta[:, 1, 2] *= 2 / h
    grid = F.affine_grid(theta.float(), [n, c, h, w], align_corners=False)
    out = F.grid_sample(planes.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round().to(torch.uint8)


@pytest.mark.parametrize(("op", "value"), [("rotate", 9.0), ("rotate", -27.0), ("shear_x", 0.09),
                                           ("shear_y", -0.21)])  # fmt: skip
def test_the_gathered_geometric_ops_equal_grid_sample(op, value):
    planes = image(side=24, count=3, seed=4)[:, :, :, :20]  # 24 x 20: not square
    values = torch.full((3,), value, dtype=torch.float64)
    matrices = geometric_matrix(op, values, height=24, width=20)
    assert torch.equal(affine(planes.contiguous(), matrices), grid_sampled(planes, matrices))


def test_shears_pivot_on_the_top_left_corner():
    planes = image(side=8)
    sheared = moved("shear_x", planes, 0.3)
    expect = torch.zeros_like(planes)
    for row in range(8):  # output column x reads column round(x + 0.3 * (row + 0.5)), zero past the edge
        for col in range(8):
            source = round(col + 0.3 * (row + 0.5))
            if source < 8:
                expect[:, :, row, col] = planes[:, :, row, source]
    assert torch.equal(sheared, expect)
    # shear_y: row y of column x reads row round(y + s * (x + 0.5)): column 0 stays (0.15 rounds away)
    assert torch.equal(moved("shear_y", planes, -0.3)[..., 0], planes[..., 0])


def test_brightness_color_contrast_blend_as_torchvision_and_truncate():
    planes = torch.tensor([[100, 250], [10, 0]], dtype=torch.uint8).reshape(1, 1, 2, 2).expand(1, 3, 2, 2).clone()
    assert apply_colour("brightness", planes, torch.tensor([0.27]))[0, 0].flatten().tolist() == [127, 255, 12, 0]
    assert torch.equal(apply_colour("color", planes, torch.tensor([0.9])), planes)  # grey pixels keep their colour
    flat = torch.full((1, 3, 2, 2), 77, dtype=torch.uint8)
    # the luma weights sum to 0.9999: grey 77 truncates to 76, so 0.5 * 77 + 0.5 * 76 = 76.5 -> 76
    assert torch.equal(apply_colour("contrast", flat, torch.tensor([-0.5])), flat - 1)
    red = torch.zeros(1, 3, 1, 1, dtype=torch.uint8)
    red[0, 0] = 200  # grey: int(0.2989 * 200) = 59; factor 0.5: (100 + 29.5, 29.5, 29.5) truncated
    assert apply_colour("color", red, torch.tensor([-0.5])).flatten().tolist() == [129, 29, 29]
    contrast = apply_colour("contrast", planes[:, :1], torch.tensor([1.0]))  # grey set: mean 90, factor 2
    assert contrast.flatten().tolist() == [110, 255, 0, 0]


def test_color_is_the_identity_on_grey_images():
    planes = image(channels=1)
    assert torch.equal(apply_colour("color", planes, torch.tensor([0.9, -0.9])), planes)


def test_sharpness_blends_with_a_3x3_blur_and_keeps_the_border():
    planes = torch.zeros(1, 1, 3, 3, dtype=torch.uint8)
    planes[0, 0, 1, 1] = 130  # blur at the centre: round(5 * 130 / 13) = 50
    out = apply_colour("sharpness", planes, torch.tensor([0.27]))  # 1.27 * 130 - 0.27 * 50 = 151.6
    assert out[0, 0, 1, 1] == 151 and torch.equal(out.flatten()[:4], planes.flatten()[:4])
    small = image(side=2)
    assert torch.equal(apply_colour("sharpness", small, torch.tensor([0.5, 0.5])), small)


def test_the_blur_summed_in_integers_equals_torchvisions_float_convolution():
    planes = image(side=20, count=4, seed=3)
    kernel = torch.ones(3, 3)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(3, 1, 3, 3)
    expect = planes.clone()
    expect[:, :, 1:-1, 1:-1] = F.conv2d(planes.float(), kernel, groups=3).round().to(torch.uint8)
    assert torch.equal(smoothed(planes), expect)


def test_autocontrast_stretches_each_channel_and_leaves_a_flat_one():
    planes = torch.tensor([50, 100, 150, 150], dtype=torch.uint8).reshape(1, 1, 2, 2).repeat(1, 2, 1, 1)
    planes[0, 1] = 9
    out = apply_colour("autocontrast", planes, torch.tensor([0.0]))
    assert out[0, 0].flatten().tolist() == [0, 127, 255, 255] and torch.equal(out[0, 1], planes[0, 1])


def reference_equalize(channel: np.ndarray) -> np.ndarray:
    """PIL's ImageOps.equalize rule, one channel, written out plainly."""
    hist = np.bincount(channel.ravel(), minlength=256)
    used = hist[hist > 0]
    step = int(used[:-1].sum()) // 255
    if step == 0:
        return channel
    lut, total = [], step // 2
    for count in hist:
        lut.append(min(total // step, 255))
        total += int(count)
    return np.array(lut, np.uint8)[channel]


def test_equalize_matches_pils_rule_per_channel():
    rng = np.random.default_rng(1)
    planes = torch.from_numpy(rng.integers(40, 120, (3, 3, 24, 24), np.uint8))
    planes[2, 1] = 7  # one level: step 0, unchanged
    planes[1, 2, :, :12] = 200  # two levels
    out = equalize(planes)
    for i in range(3):
        for c in range(3):
            assert np.array_equal(out[i, c].numpy(), reference_equalize(planes[i, c].numpy())), (i, c)
    assert out[0, 0].max() > 240 and out[0, 0].min() == 0  # 40..119 spread over the whole range


def test_draws_come_from_the_keys_and_cover_every_op_and_both_signs():
    ra = RandAugment(num_ops=2, magnitude=9)
    keys = sample_keys(0, 3, np.arange(600))
    ops, negate = ra.draw(keys)
    assert ops.shape == (600, 2) and set(ops.flatten().tolist()) == set(range(len(OPS)))
    assert 0.4 < negate.float().mean() < 0.6 and (ops[:, 0] != ops[:, 1]).any()
    again, _ = ra.draw(keys[100:200])
    assert torch.equal(again, ops[100:200])
    assert not torch.equal(ra.draw(sample_keys(1, 3, np.arange(600)))[0], ops)


def test_a_sample_is_augmented_the_same_in_any_batch_split_and_layout():
    ra = RandAugment(num_ops=2, magnitude=9)
    keys = sample_keys(5, 0, np.arange(40))
    planes = image(side=16, count=40, seed=2)  # (B, C, H, W) memory, as the reader's planar batches
    whole = planes.clone().permute(0, 2, 3, 1)  # (B, H, W, C) view
    ra(whole, keys)
    halves = planes.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C) memory, as two ranks' batches
    ra(halves[:17], keys[:17])
    ra(halves[17:], keys[17:])
    assert torch.equal(whole, halves)
    assert (whole != planes.permute(0, 2, 3, 1)).flatten(1).any(1).float().mean() > 0.8


def test_the_loader_augments_each_batch_by_its_samples_keys(tiny_data):
    ds = PreparedDataset(tiny_data)
    ra = RandAugment(num_ops=2, magnitude=12)
    options = {"batch_size": 16, "shuffle": True, "seed": 4, "crop": 24, "workers": 1}
    plain = [b.images.clone() for b in Loader(ds, **options).batches(1)]
    augmented = [b.images.clone() for b in Loader(ds, **options, randaugment=ra).batches(1)]
    for step, (before, after) in enumerate(zip(plain, augmented, strict=True)):
        ra(before, sample_keys(4, 1, np.arange(16 * step, 16 * step + 16)))
        assert torch.equal(before, after)


def test_randaugment_for_reads_the_config_value():
    assert randaugment_for([]) is None
    ra = randaugment_for([2, 9])
    assert (ra.num_ops, ra.magnitude) == (2, 9)


@pytest.mark.parametrize(
    "setting",
    [
        "data.randaugment=[0,9]",
        "data.randaugment=[2,31]",
        "data.randaugment=[2]",
        "data.randaugment=[2,-1]",
        "data.randaugment=[2,9,1]",
    ],
)
def test_bad_randaugment_settings_are_refused_before_training(tmp_path, capsys, setting):
    assert cli("train", CONFIG, "--out", tmp_path / "run", "--set", setting) == 2
    one_line(capsys, "config: data.randaugment must be [num_ops >= 1, magnitude 0..30] or [] (off), got")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_with_randaugment_differs_from_one_without_and_resumes_to_the_same_weights(tiny_data, tmp_path):
    options = {"train.epochs": 2, "data.crop": 28, "checkpoint.every_steps": 0, "data.randaugment": "[2,9]"}
    assert train(tmp_path / "whole", tiny_data, **options) == 0
    part = tmp_path / "part"
    assert train(part, tiny_data, **{**options, "train.max_steps": 7}) == 0  # stops inside the second epoch
    assert train(part, tiny_data, "--resume", "auto", **options) == 0
    whole, resumed = final_weights(tmp_path / "whole"), final_weights(part)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert train(tmp_path / "off", tiny_data, **{**options, "data.randaugment": "[]"}) == 0
    off = final_weights(tmp_path / "off")
    assert not all(torch.equal(whole[k], off[k]) for k in whole)
