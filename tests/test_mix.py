"""Mixup and CutMix (data/mix.py): the arithmetic, the box, the draws from the keys, the loss
on soft targets, the config's refusals, and a run that resumes exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.support import CONFIG, cli, final_weights, one_line, train

from lsvr.config import TrainConfig
from lsvr.data.mix import Mix, MixDraw, apply
from lsvr.inference import load_model
from lsvr.models.blurpool import BlurConv2d
from lsvr.train.step import step_forward_backward

CLASSES = 10


def mix(**options) -> Mix:
    base = {"mixup": 0.0, "cutmix": 0.0, "switch": 0.5, "num_classes": CLASSES, "seed": 3, "global_batch": 8}
    return Mix(**{**base, **options})


def batch(count: int = 8, side: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Images where every pixel of image i is i + 1 (so a pasted pixel shows its source), and labels 0..count-1."""
    images = torch.arange(1.0, count + 1)[:, None, None, None].expand(count, 3, side, side).contiguous()
    return images, torch.arange(count) % CLASSES


def test_mixup_blends_each_image_with_the_one_before_it_and_its_targets_alike():
    images, labels = batch()
    draw = mix(mixup=0.4).draw(epoch=0, step=0, height=12, width=12)
    assert draw.kind == "mixup" and 0.0 < draw.lam < 1.0
    mixed, targets = apply(draw, images.clone(), labels, num_classes=CLASSES)
    torch.testing.assert_close(mixed, draw.lam * images + (1 - draw.lam) * images.roll(1, 0))
    one_hot = F.one_hot(labels, CLASSES).float()
    torch.testing.assert_close(targets, draw.lam * one_hot + (1 - draw.lam) * one_hot.roll(1, 0))
    torch.testing.assert_close(targets.sum(1), torch.ones(8))


def test_mixup_keeps_a_channels_last_batch_channels_last_with_the_same_values():
    torch.manual_seed(0)
    images, labels = torch.randn(5, 3, 6, 6), torch.arange(5)
    draw = MixDraw("mixup", 0.3)
    nhwc, _ = apply(draw, images.clone().to(memory_format=torch.channels_last), labels, num_classes=CLASSES)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc, apply(draw, images.clone(), labels, num_classes=CLASSES)[0])


def test_cutmix_pastes_one_box_and_weighs_targets_by_the_area_kept():
    clipped = 0
    for step in range(40):
        images, labels = batch()
        draw = mix(cutmix=1.0).draw(epoch=2, step=step, height=12, width=12)
        assert draw.kind == "cutmix"
        mixed, targets = apply(draw, images.clone(), labels, num_classes=CLASSES)
        pasted = mixed != images  # (B, C, H, W): where the partner's pixels landed
        top, bottom, left, right = draw.box
        inside = torch.zeros(12, 12, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        assert torch.equal(pasted, inside.expand_as(pasted))  # one box, the same in every image
        assert torch.equal(mixed[:, :, inside], images.roll(1, 0)[:, :, inside])
        # lambda is the area each image keeps of itself, the clipped box's, not the drawn one's
        assert draw.lam == pytest.approx(1 - inside.float().mean().item())
        torch.testing.assert_close(targets[torch.arange(8), labels], torch.full((8,), draw.lam))
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        clipped += top == 0 or left == 0 or bottom == 12 or right == 12
    assert clipped  # some boxes met the border: the correction was exercised


def test_the_switch_picks_cutmix_with_its_probability():
    def kinds(switch: float) -> set[str]:
        both = mix(mixup=0.2, cutmix=1.0, switch=switch)
        return {both.draw(epoch=0, step=s, height=8, width=8).kind for s in range(30)}

    assert kinds(0.0) == {"mixup"} and kinds(1.0) == {"cutmix"} and kinds(0.5) == {"mixup", "cutmix"}


def test_draws_come_from_the_keys_of_seed_epoch_and_global_batch():
    one = mix(mixup=0.2, cutmix=1.0)
    again = [mix(mixup=0.2, cutmix=1.0).draw(epoch=1, step=s, height=16, width=16) for s in range(6)]
    assert again == [one.draw(epoch=1, step=s, height=16, width=16) for s in range(6)]  # a resumed run's
    other_epoch = [one.draw(epoch=2, step=s, height=16, width=16) for s in range(6)]
    other_seed = [mix(mixup=0.2, cutmix=1.0, seed=4).draw(epoch=1, step=s, height=16, width=16) for s in range(6)]
    assert all(a.lam != b.lam for a, b in zip(again, other_epoch, strict=True))
    assert all(a.lam != b.lam for a, b in zip(again, other_seed, strict=True))


def test_off_returns_the_batch_and_labels_as_they_are():
    images, labels = batch()
    out, targets = mix()(images, labels, epoch=0, step=0)
    assert out is images and targets is labels


def test_soft_target_loss_with_label_smoothing_equals_mixed_smoothed_one_hots():
    torch.manual_seed(0)
    logits, labels, lam, eps = torch.randn(6, CLASSES), torch.randint(0, CLASSES, (6,)), 0.3, 0.1
    _, targets = apply(MixDraw("mixup", lam), torch.zeros(6, 1, 2, 2), labels, num_classes=CLASSES)
    smooth = F.one_hot(labels, CLASSES).float() * (1 - eps) + eps / CLASSES  # torchvision: smoothed, then mixed
    soft = lam * smooth + (1 - lam) * smooth.roll(1, 0)
    by_hand = -(soft * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(F.cross_entropy(logits, targets, label_smoothing=eps), by_hand)
    # and a plain batch (lam 1) is the loss of its class indices
    _, plain = apply(MixDraw("mixup", 1.0), torch.zeros(6, 1, 2, 2), labels, num_classes=CLASSES)
    torch.testing.assert_close(F.cross_entropy(logits, plain, label_smoothing=eps),
                               F.cross_entropy(logits, labels, label_smoothing=eps))  # fmt: skip


def test_accumulated_micro_batches_give_the_whole_batchs_loss_and_gradient_on_soft_targets():
    images, labels = batch(8, 4)
    images, targets = mix(mixup=0.5, cutmix=1.0)(images, labels, epoch=0, step=1)
    results = []
    for chunks in (1, 2):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, CLASSES))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        cfg = TrainConfig(accumulate=chunks, label_smoothing=0.1)
        loss = step_forward_backward(net, optimizer, scaler, images, targets, cfg)
        results.append((loss, [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("data.mixup=-0.2", "data.mixup must be >= 0 (0: off), got -0.2"),
        ("data.cutmix=-1", "data.cutmix must be >= 0 (0: off), got -1.0"),
        ("data.mix_switch=1.5", "data.mix_switch must be in [0, 1], got 1.5"),
        ("data.mix_switch=-0.1", "data.mix_switch must be in [0, 1], got -0.1"),
    ],
)
def test_bad_mix_settings_are_refused_before_training(tmp_path, capsys, setting, message):
    assert cli("train", CONFIG, "--out", tmp_path / "run", "--set", setting) == 2
    one_line(capsys, f"config: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_mixup_cutmix_and_blurpool_train_and_resume_to_the_same_weights(tiny_data, tmp_path):
    # 160 images: 5 steps of 32, each cut into 2 micro-batches; a new epoch's draws are the unit tests'
    options = {"model.name": "resnet18", "model.blurpool": "true", "model.dropout": "null", "data.mixup": 0.2,
               "data.cutmix": 1.0, "train.label_smoothing": 0.1, "train.accumulate": 2, "train.epochs": 1,
               "data.crop": 16, "data.normalize": "channel", "checkpoint.every_steps": 0}  # fmt: skip
    run_mix = mix(mixup=0.2, cutmix=1.0, seed=0, global_batch=32)
    assert {run_mix.draw(epoch=0, step=s, height=16, width=16).kind for s in range(5)} == {"mixup", "cutmix"}
    assert train(tmp_path / "whole", tiny_data, **options) == 0
    part = tmp_path / "part"
    assert train(part, tiny_data, **{**options, "train.max_steps": 2}) == 0  # stops inside the epoch
    assert train(part, tiny_data, "--resume", "auto", **options) == 0
    whole, resumed = final_weights(tmp_path / "whole"), final_weights(part)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    model, _, _ = load_model(part, torch.device("cpu"))  # inference builds it with the blur, as trained
    assert sum(isinstance(m, BlurConv2d) for m in model.modules()) == 6
