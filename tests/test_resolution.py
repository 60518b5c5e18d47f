"""Progressive resizing (data.res_*): the ramp as a function of the fractional epoch, the
loader's batches at their own step's side (read ahead, resumed, at world 2), the windows' content at a
lower side (the paper's crop and rrc), the refusals before the first step, and a run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.support import cli, one_line, train, write_tree

from lsvr.config_file import load_config
from lsvr.data.dataset import PreparedDataset
from lsvr.data.loader import Loader
from lsvr.data.resolution import ResolutionRamp
from lsvr.errors import InputError
from lsvr.runs import checkpoints
from lsvr.train.resizing import check_resolution


def test_the_ramp_holds_then_rises_in_multiples_then_holds():
    ramp = ResolutionRamp(160, 224, 2.0, 6.0, 32)  # FFCV's shape: 160 until epoch 2, 224 from epoch 6
    at = {e: ramp.at(e) for e in (0, 1.5, 2, 2.4, 2.5, 3, 4, 4.9, 5, 5.5, 6, 9)}
    # between: 160 + (e - 2) / 4 * 64 to the nearest multiple of 32, halves up (3: 176 -> 192)
    assert at == {0: 160, 1.5: 160, 2: 160, 2.4: 160, 2.5: 160, 3: 192, 4: 192, 4.9: 192, 5: 224, 5.5: 224, 6: 224,
                  9: 224}  # fmt: skip
    grid = [ramp.at(e) for e in np.linspace(0, 8, 801)]
    assert all(s % 32 == 0 and 160 <= s <= 224 for s in grid) and grid == sorted(grid)
    assert ramp.sides() == [160, 192, 224] and set(grid) == {160, 192, 224}
    step = ResolutionRamp(16, 28, 3.0, 3.0, 4)  # a == b: one jump, at epoch 3
    assert [step.at(e) for e in (0, 2.99, 3, 3.5)] == [16, 16, 28, 28] and step.sides() == [16, 20, 24, 28]


def ramp_loader(ds: PreparedDataset, ramp: ResolutionRamp | None, **options) -> Loader:
    return Loader(ds, batch_size=32, shuffle=True, seed=4, crop=28, resolution=ramp, **options)


def test_batches_read_ahead_resumed_or_on_two_ranks_take_their_own_steps_side(tiny_data):
    ds = PreparedDataset(tiny_data)  # 160 images: 5 steps of 32 an epoch
    ramp = ResolutionRamp(16, 28, 0.0, 1.0, 4)
    # prefetch 5: every batch of the epoch is read before the first is trained on
    ahead = ramp_loader(ds, ramp, workers=2, prefetch=5)
    sides = [b.images.shape[1] for b in ahead.batches(0)]
    assert sides == [ramp.at(step / 5) for step in range(5)] == [16, 20, 20, 24, 24]
    batches = list(ramp_loader(ds, ramp, workers=1, prefetch=1).batches(0))
    assert [b.images.shape for b in batches] == [(32, s, s, 1) for s in sides]
    halves = [Loader(ds, batch_size=16, shuffle=True, seed=4, crop=28, resolution=ramp, rank=rank, world=2)
              for rank in (0, 1)]  # fmt: skip
    for whole, *parts in zip(batches, *(h.batches(0) for h in halves), strict=True):  # the same at world 2
        assert torch.equal(whole.images, torch.cat([p.images for p in parts]))
    resumed = list(ramp_loader(ds, ramp, workers=2, prefetch=3).batches(0, start_step=3))
    assert [b.step for b in resumed] == [3, 4] and [b.images.shape[1] for b in resumed] == [24, 24]
    assert all(torch.equal(a.images, b.images) for a, b in zip(resumed, batches[3:], strict=True))
    # past the ramp, at the crop: the batches of a run without it, bit for bit
    after, plain = ramp_loader(ds, ramp, workers=2).batches(1), ramp_loader(ds, None, workers=2).batches(1)
    for a, b in zip(after, plain, strict=True):
        assert a.images.shape == (32, 28, 28, 1) and torch.equal(a.images, b.images)
        assert all(torch.equal(x, y) for x, y in zip(a.draws.tensors(), b.draws.tensors(), strict=True))


def test_batch_memory_follows_the_side_and_keeps_only_the_last(tiny_data):
    from lsvr.data.augment import Augment

    ds = PreparedDataset(tiny_data)
    loader = ramp_loader(ds, ResolutionRamp(16, 28, 0.0, 1.0, 4), workers=2, prefetch=2)
    augment = Augment(mean_image=None, channel_mean=ds.channel_mean, channel_std=ds.channel_std, crop=28,
                      normalize="channel")  # fmt: skip
    for epoch in (0, 1):
        for batch in loader.batches(epoch):
            side = batch.images.shape[1]
            images = augment.train(batch)  # normalised into buffers of the batch's own shape
            # (the uint8 images are mirrored in place by then)
            expected = (batch.images.permute(0, 3, 1, 2).float() - ds.channel_mean[0]) / ds.channel_std[0]
            assert images.shape == (32, 1, side, side) and torch.allclose(images, expected, atol=1e-5)
            batch.release()
    pool = loader._pool  # the old sides' buffers were dropped as the new side asked for memory
    assert {tuple(buffer.shape) for buffer, _ in pool.free} == {(32, 28, 28, 1)} and len(pool.free) <= pool.size


@pytest.fixture(scope="module")
def rgb_set(tmp_path_factory) -> PreparedDataset:
    """32 RGB images stored raw at 40 x 40."""
    root = tmp_path_factory.mktemp("res-rgb")
    write_tree(root / "src", {"a": 16, "b": 16}, size=(50, 44))
    assert cli("prepare", root / "src", root / "ds", "--size", "40", "--no-progress") == 0
    return PreparedDataset(root / "ds")


def interpolated(window: np.ndarray, side: int) -> np.ndarray:
    """An (h, w, C) uint8 window resized to side x side as floats: bilinear, antialiased, rounded."""
    pixels = torch.from_numpy(window.copy()).permute(2, 0, 1)[None].double()  # (1, C, h, w)
    out = F.interpolate(pixels, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("dataset", ["tiny", "rgb"])
@pytest.mark.parametrize("window", ["crop", "rrc"])
def test_a_lower_side_is_the_same_window_resized(tiny_data, rgb_set, dataset, window):
    ds = PreparedDataset(tiny_data) if dataset == "tiny" else rgb_set
    ramp = ResolutionRamp(20, 20, 0.0, 1.0, 4)  # 20 px throughout: the windows drawn at 28, resized
    options = {"batch_size": 16, "shuffle": True, "seed": 2, "crop": 28, "window": window, "workers": 1}
    low, full = Loader(ds, resolution=ramp, **options), Loader(ds, **options)
    order = low.epoch_order(0)
    for batch, same in zip(low.batches(0), full.batches(0), strict=True):
        assert batch.images.shape == (16, 20, 20, ds.shape[2]) and batch.draws.crop == 20
        windows = [t.tolist() for t in (batch.draws.top, batch.draws.left, batch.draws.height, batch.draws.width)]
        assert windows == [t.tolist() for t in (same.draws.top, same.draws.left, same.draws.height, same.draws.width)]
        if window == "crop":
            assert set(windows[2]) == set(windows[3]) == {28}  # the paper's crop x crop window
        rows = order[low.rank_slice(batch.step, len(order))]
        for j, (row, t, lft, h, w) in enumerate(zip(rows.tolist(), *windows, strict=True)):
            expected = interpolated(ds.image(row)[t : t + h, lft : lft + w], 20)
            assert np.abs(batch.images[j].numpy().astype(np.float64) - expected).max() <= 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [(["data.res_start=4", "data.res_multiple=4", "data.res_epochs=[0, 1]"], "data.res_start must be 0 (off) or >= 8"),
     (["data.res_start=30", "data.res_multiple=4", "data.res_epochs=[0, 1]"], "data.res_start=30 is not a multiple"),
     (["data.res_start=16", "data.res_end=30", "data.res_multiple=4", "data.res_epochs=[0, 1]"],
      "data.res_end=30 is not a multiple of data.res_multiple=4"),
     (["data.res_start=28", "data.res_end=24", "data.res_multiple=4", "data.res_epochs=[0, 1]"],
      "data.res_start=28 > data.res_end=24: the resolution must not decrease"),
     (["data.res_start=16", "data.res_multiple=4", "data.res_epochs=[2, 1]"], "data.res_epochs must be [a, b]"),
     (["data.res_start=16", "data.res_multiple=4", "data.res_epochs=[-1, 1]"], "0 <= a <= b and b > 0"),
     (["data.res_start=16", "data.res_multiple=4", "data.res_epochs=[1]"], "data.res_epochs must be"),
     (["data.res_start=16", "data.res_multiple=4"], "got [0.0, 0.0]"),
     (["data.res_end=24"], "data.res_end=24 needs data.res_start"),
     (["data.res_multiple=0"], "data.res_multiple must be >= 1")],
)  # fmt: skip
def test_ramp_keys_out_of_range_are_refused(settings, message):
    with pytest.raises(InputError, match=re.escape(message)):
        load_config(None, settings)
    ok = load_config(None, ["data.res_start=16", "data.res_multiple=4", "data.res_epochs=[0, 2.5]"]).data
    assert (ok.res_start, ok.res_end, ok.res_epochs) == (16, 0, [0.0, 2.5])


RAMP = {"data.res_multiple": 4, "data.res_epochs": "[0, 2]"}


@pytest.mark.parametrize(
    ("extra", "needles"),
    [({"data.crop": 24, "data.res_start": 16, "data.res_end": 28}, ("data.res_end=28 exceeds data.crop=24",)),
     ({"data.augment": "rrc", "data.crop": 40, "data.res_start": 24, "data.res_multiple": 8},
      ("data.crop=40 is larger than the images of", "(32)")),
     ({"data.res_start": 32}, ("data.res_start=32 > data.res_end=0, i.e. data.crop (28)",)),
     ({"data.res_start": 16, "data.res_multiple": 8}, ("data.crop (28) is not a multiple of data.res_multiple=8",)),
     ({"data.res_start": 24, "data.normalize": "mean_image"}, ("data.normalize=mean_image", "data.normalize=channel")),
     ({"data.res_start": 16}, ("model.name=alexnet_small built for data.crop=28 does not take 16 px images",
                               "resnet*")),
     ({"model.name": "vit_s_16", "data.crop": 32, "data.res_start": 16, "data.res_multiple": 16},
      ("model.name=vit_s_16 built for data.crop=32 does not take 16 px images",))],
)  # fmt: skip
def test_a_ramp_the_crop_set_or_model_cannot_follow_exits_2_before_training(tiny_data, tmp_path, capsys, extra,
                                                                            needles):  # fmt: skip
    capsys.readouterr()
    assert train(tmp_path / "run", tiny_data, **{**RAMP, **extra}) == 2
    assert not (tmp_path / "run" / "checkpoints").exists()
    one_line(capsys, *needles)


def test_a_model_that_pools_to_a_fixed_size_takes_the_ramp(tiny_data):
    cfg = load_config(None, ["model.name=resnet18", "data.crop=32", "data.res_start=16", "data.res_multiple=8",
                             "data.res_epochs=[1, 3]", "data.normalize=channel"])  # fmt: skip
    line = check_resolution(cfg, PreparedDataset(tiny_data), crop=32)
    assert line == ("lsvr train: progressive resizing: 16, 24, 32 px (multiples of 8), 16 px up to epoch 1,"
                    " 32 px from epoch 3")  # fmt: skip
    off = load_config(None, ["model.name=resnet18", "data.crop=32"])
    assert check_resolution(off, PreparedDataset(tiny_data), crop=32) is None


def train_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.slow
def test_a_run_ramps_from_24_to_28_px_and_resumes_mid_ramp_exactly(tiny_data, tmp_path, capsys):
    """alexnet_small_bn (its classifier takes 23 to 30 px) over 3 epochs of 5 steps, 24 px
    until the ramp's middle (epoch 1), 28 px after; stopped after step 4 and resumed, it ends
    on the same weights as the run that went through."""
    extra = {**RAMP, "model.name": "alexnet_small_bn", "model.width": 0.5, "data.res_start": 24,
             "checkpoint.every_steps": 0}  # fmt: skip
    capsys.readouterr()
    assert train(tmp_path / "whole", tiny_data, **extra) == 0
    err = capsys.readouterr().err
    assert "progressive resizing: 24, 28 px (multiples of 4), 24 px up to epoch 0, 28 px from epoch 2" in err
    assert err.count("training resolution") == 1 and "step 6: training resolution 24 -> 28 px" in err
    records = train_records(tmp_path / "whole")
    assert [r["res"] for r in records] == [24] * 5 + [28] * 10 and [r["step"] for r in records] == list(range(1, 16))
    assert train(tmp_path / "part", tiny_data, **extra, **{"train.max_steps": 4}) == 0
    assert train(tmp_path / "part", tiny_data, "--resume", "auto", **extra) == 0
    assert [r["res"] for r in train_records(tmp_path / "part")] == [24] * 5 + [28] * 10
    whole = checkpoints.load(checkpoints.find(tmp_path / "whole"))["model"]
    part = checkpoints.load(checkpoints.find(tmp_path / "part"))["model"]
    assert all(torch.equal(whole[k], part[k]) for k in whole)
