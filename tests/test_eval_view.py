"""What validation sees: flip averaging (data.val_flip, lsvr eval --flip) and the evaluation
resolution (data.eval_size, data.eval_crop), in the run's record and in `lsvr eval` of the run."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.support import cli, one_line, train

from lsvr.data.augment import Augment
from lsvr.data.dataset import PreparedDataset
from lsvr.evaluate import eval_loader, evaluate
from lsvr.preprocess import Preprocess
from lsvr.runs import checkpoints
from lsvr.runs.metrics import read_metrics


class Columns(torch.nn.Module):
    """Logits from the image's column profile: (B, C, H, W) -> mean over C and H, (B, W), times a
    fixed (W, 10) matrix. Its mirror's output is the reversed profile's: known by hand."""

    def __init__(self, width: int, scale: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(scale * torch.randn(width, 10, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2)) @ self.weight


@pytest.mark.parametrize("normalize", ["channel", "mean_image"])
def test_flip_averages_the_softmax_of_the_view_and_its_mirror(tiny_data, normalize):
    ds = PreparedDataset(tiny_data)
    pre = Preprocess.from_dataset(ds, crop=28, normalize=normalize)
    augment = Augment(mean_image=ds.mean_image, channel_mean=ds.channel_mean, channel_std=ds.channel_std, crop=28,
                      normalize=normalize)  # fmt: skip
    model = Columns(28, scale=1.0 if normalize == "channel" else 0.02)  # mean image: pixels 0..255
    loader = eval_loader(ds, pre, batch_size=50, workers=1)
    flipped, plain = evaluate(model, loader, augment, flip=True), evaluate(model, loader, augment)
    # by hand: the centre 28 of 32 (offset 2), normalised, and the same mirrored (its mean mirrored too)
    pixels = torch.from_numpy(ds.read(np.arange(len(ds)))).float()[:, 2:30, 2:30, :]  # (N, 28, 28, 1)
    if normalize == "channel":
        view = (pixels - torch.tensor(ds.channel_mean)) / torch.tensor(ds.channel_std)
    else:
        view = pixels - torch.from_numpy(ds.mean_image)[2:30, 2:30, :]
    view = view.permute(0, 3, 1, 2)  # (N, 1, 28, 28)
    with torch.no_grad():
        probs = (F.softmax(model(view), dim=1) + F.softmax(model(view.flip(3)), dim=1)) / 2  # (N, 10)
    labels = torch.from_numpy(ds.labels)
    assert flipped["images"] == len(ds)
    assert flipped["top1"] == pytest.approx(100.0 * float((probs.argmax(1) == labels).float().mean()), abs=1e-9)
    assert flipped["loss"] == pytest.approx(float(-probs[torch.arange(len(ds)), labels].log().mean()), rel=1e-5)
    assert flipped["loss"] != pytest.approx(plain["loss"], rel=1e-3)  # the mirror changes what is scored


def test_ten_crops_with_flip_are_refused(capsys, tmp_path):
    assert cli("eval", tmp_path / "none", tmp_path / "none", "--flip", "--crops", "10") == 2
    one_line(capsys, "--flip with --crops 10", "hold their mirrors already")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ({"data.eval_crop": 32}, ("data.eval_crop=32: model alexnet_small, built for 28 px crops, cannot take 32 px",)),
        ({"data.eval_crop": 34}, ("data.eval_crop=34 is larger than the evaluation size", "set data.eval_size")),
        ({"data.eval_size": 30, "data.eval_crop": 31}, ("data.eval_crop=31 is larger than data.eval_size, 30",)),
        ({"data.eval_size": 36}, ("data.eval_size=36 resizes the 32 px images", "data.normalize=channel")),
    ],
)
def test_an_evaluation_view_that_cannot_be_taken_exits_2_before_training(tiny_data, tmp_path, capsys, extra, needles):
    extra = {"data.holdout": 32, "data.normalize": "mean_image", **extra}
    assert train(tmp_path / "run", tiny_data, **extra) == 2
    one_line(capsys, *needles)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_a_run_validated_higher_and_mirrored_is_scored_again_by_lsvr_eval(demo_prepared, tmp_path, capsys):
    """alexnet_small_bn trained on 28 px crops of the 32 px demo set takes 30 px (its fc6 sees the
    same 2 x 2 features): validation at Resize(34) + CenterCrop(30) with the mirror, recorded, and
    `lsvr eval` of the run scores the same; --no-flip scores otherwise."""
    run = tmp_path / "run"
    extra = {"data.val": demo_prepared / "test", "model.name": "alexnet_small_bn", "model.width": 0.5,
             "data.normalize": "channel", "train.global_batch": 64, "train.epochs": 1, "train.max_steps": 20,
             "checkpoint.every_steps": 0, "data.eval_size": 34, "data.eval_crop": 30,
             "data.val_flip": "true"}  # fmt: skip
    assert train(run, demo_prepared / "train", **extra) == 0, capsys.readouterr().err[-2000:]
    pre = checkpoints.read(checkpoints.find(run)).preprocess
    assert (pre.crop, pre.eval_size, pre.eval_crop, pre.eval_flip) == (28, 34, 30, True)
    (val,) = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "val"]
    capsys.readouterr()
    assert cli("eval", run, demo_prepared / "test", "--json", "--batch", "64") == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["flip"], again["resize"], again["crop"], again["images"]) == (True, 34, 30, 2000)
    assert again["top1"] == val["top1"] and again["loss"] == pytest.approx(val["loss"], rel=1e-6)
    assert cli("eval", run, demo_prepared / "test", "--json", "--batch", "64", "--no-flip") == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["flip"] is False and plain["loss"] != pytest.approx(val["loss"], rel=1e-4)
    assert cli("eval", run, demo_prepared / "test") == 0
    assert "the centre crop and its mirror (30 px of 34)" in capsys.readouterr().out
