"""Shifted evaluation views (data.val_shift, lsvr eval --shift: airbench's translate TTA) and
validation from a later epoch on (train.val_from)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.support import cli, one_line, train

from lsvr.data.augment import Augment
from lsvr.data.dataset import PreparedDataset
from lsvr.evaluate import eval_loader, evaluate
from lsvr.inference import eval_batch, predict
from lsvr.preprocess import Preprocess
from lsvr.runs import checkpoints
from lsvr.runs.metrics import read_metrics
from lsvr.train.budget import plan_steps


class Pixels(torch.nn.Module):
    """Logits linear in every pixel of a (B, 1, 28, 28) view: a shift or a mirror changes them."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(0.05 * torch.randn(28 * 28, 10, generator=torch.Generator().manual_seed(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight


def test_a_shift_puts_half_the_weight_on_crops_moved_up_left_and_down_right(tiny_data):
    ds = PreparedDataset(tiny_data)
    pre = Preprocess.from_dataset(ds, crop=28, normalize="channel")
    augment = Augment(mean_image=ds.mean_image, channel_mean=ds.channel_mean, channel_std=ds.channel_std, crop=28,
                      normalize="channel")  # fmt: skip
    model = Pixels()
    loader = eval_loader(ds, replace(pre, eval_shift=1), batch_size=50, workers=1)
    shifted = evaluate(model, loader, augment, flip=True, shift=1)
    # by hand: of the 32 px images, the 28 px crops at offsets 2 (the centre), 1 and 3, each mirrored
    images = ds.read(np.arange(len(ds)))
    pixels = (torch.from_numpy(images).float() - torch.tensor(ds.channel_mean)) / torch.tensor(ds.channel_std)
    pixels = pixels.permute(0, 3, 1, 2)  # (N, 1, 32, 32)

    def probs(offset: int) -> torch.Tensor:  # the crop and its mirror, averaged
        view = pixels[:, :, offset : offset + 28, offset : offset + 28]
        return (F.softmax(model(view), dim=1) + F.softmax(model(view.flip(3)), dim=1)) / 2

    with torch.no_grad():
        want = 0.5 * probs(2) + 0.25 * probs(1) + 0.25 * probs(3)  # (N, 10)
    labels = torch.from_numpy(ds.labels)
    assert shifted["images"] == len(ds)
    assert shifted["loss"] == pytest.approx(float(-want[torch.arange(len(ds)), labels].log().mean()), rel=1e-5)
    assert shifted["top1"] == pytest.approx(100.0 * int((want.argmax(1) == labels).sum()) / len(ds), abs=1e-9)
    centre = evaluate(model, eval_loader(ds, pre, batch_size=50, workers=1), augment, flip=True)
    assert centre["loss"] != pytest.approx(shifted["loss"], rel=1e-4)  # the moved crops change what is scored
    batch = eval_batch(list(images), replace(pre, eval_shift=1))  # predict's: the whole images, for shifted views
    assert torch.allclose(predict(model, augment, batch, torch.device("cpu"), flip=True, shift=1), want, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ({"data.val_shift": 3}, ("a 28 px crop shifted 3 px leaves the 32 px images (at most 2 px fits)",)),
        ({"data.val_shift": 1, "data.eval_size": 30, "data.eval_crop": 28},
         ("shifted views (shift 1) need images stored at the evaluation size (30), not 32 px",)),
        ({"data.val_shift": -1}, ("config: data.val_shift must be >= 0, got -1",)),
        ({"train.val_from": 0}, ("config: train.val_from must be >= 1, got 0",)),
    ],
)  # fmt: skip
def test_a_shift_or_val_from_that_cannot_be_taken_exits_2_before_training(tiny_data, tmp_path, capsys, extra,
                                                                          needles):  # fmt: skip
    assert train(tmp_path / "run", tiny_data, **{"data.holdout": 32, **extra}) == 2
    one_line(capsys, *needles)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [(("--shift", "-1"), "--shift must be a whole number >= 0, got -1"),
     (("--shift", "1", "--crops", "10"), "--shift with --crops 10: the ten crops are views of their own")],
)  # fmt: skip
def test_lsvr_eval_refuses_a_bad_shift_before_reading_a_file(capsys, tmp_path, flags, needle):
    assert cli("eval", tmp_path / "none", tmp_path / "none", *flags) == 2
    one_line(capsys, needle)


@pytest.mark.slow
def test_a_run_validated_from_epoch_3_with_shifted_views_is_scored_again_by_lsvr_eval(tiny_data, tmp_path, capsys):
    """3 epochs validated at the third only; the record keeps the shift, and `lsvr eval` of the run
    scores what its validation scored; --shift 0 scores otherwise."""
    run = tmp_path / "run"
    extra = {"data.val": tiny_data, "data.val_flip": "true", "data.val_shift": 1, "train.val_from": 3,
             "optim.lr": 0.05, "model.dropout": 0.0}  # fmt: skip
    assert train(run, tiny_data, **extra) == 0, capsys.readouterr().err[-2000:]
    vals = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "val"]
    assert [r["epoch"] for r in vals] == [3]
    pre = checkpoints.read(checkpoints.find(run)).preprocess
    assert (pre.eval_flip, pre.eval_shift) == (True, 1)
    capsys.readouterr()
    assert cli("eval", run, tiny_data, "--json", "--batch", "64") == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["flip"], again["shift"], again["images"]) == (True, 1, len(PreparedDataset(tiny_data)))
    assert again["top1"] == vals[0]["top1"] and again["loss"] == pytest.approx(vals[0]["loss"], rel=1e-6)
    assert cli("eval", run, tiny_data, "--json", "--shift", "0") == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["shift"] == 0 and plain["loss"] != pytest.approx(vals[0]["loss"], rel=1e-4)
    assert cli("eval", run, tiny_data) == 0
    assert "and its mirror, and shifted 1 px up-left and down-right (28 px of 32)" in capsys.readouterr().out


def test_val_from_runs_the_last_validation_whatever_it_says(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, tiny_data, **{"data.holdout": 32, "train.val_from": 9}) == 0, capsys.readouterr().err[-2000:]
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "val"] == [3]


def test_plan_steps_prices_only_the_validations_from_val_from_on():
    # 10 s left at step 10, 0.1 s a step, 1 s a validation, 50 steps an epoch: every epoch validated,
    # 90 steps (8 s + 2 validations); from epoch 3 on, only the last one: 100 steps (9 s + 1).
    assert plan_steps(remaining_s=10, step=10, step_s=0.1, val_s=1, steps_per_epoch=50, cap=10**6) == 90
    assert plan_steps(remaining_s=10, step=10, step_s=0.1, val_s=1, steps_per_epoch=50, cap=10**6, val_from=3) == 100


def test_a_record_without_a_shift_reads_as_none_and_a_bad_one_is_refused():
    assert Preprocess.from_dict({"crop": 28, "size": 32, "version": 1}).eval_shift == 0
    with pytest.raises(ValueError, match="eval_shift is -1, not a whole number >= 0"):
        Preprocess.from_dict({"crop": 28, "size": 32, "version": 1, "eval_shift": -1})
