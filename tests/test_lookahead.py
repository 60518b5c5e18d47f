"""train.lookahead_steps (Lookahead: k fast steps, then the slow weights step alpha toward them
and the fast restart there): its arithmetic against a hand-written reference, its config
errors, and a run resumed in the middle of a cycle, bitwise equal to one never stopped."""

import pytest
import torch
from tests.support import CONFIG, cli, one_line
from tests.test_ema_budget import _ema_sets
from torch import nn

from lsvr.errors import InputError
from lsvr.train.lookahead import Lookahead


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_lookahead_follows_the_paper_buffers_included():
    net = _bn_net().to(memory_format=torch.channels_last)
    look = Lookahead(net, steps=3, alpha=0.5)
    slow = {k: v.clone().double() for k, v in net.state_dict().items()}
    for step in range(1, 7):
        net.train()
        net(torch.randn(6, 3, 8, 8))  # moves BatchNorm's running statistics and its counter
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))  # an update
        fast = {k: v.clone().double() for k, v in net.state_dict().items()}
        look.after_update(step)
        now = net.state_dict()
        if step % 3:  # between the k-th steps the model is left alone
            assert all(torch.equal(now[k].double(), fast[k]) for k in now)
            continue
        for key, value in now.items():
            if value.is_floating_point():
                slow[key] = slow[key] + 0.5 * (fast[key] - slow[key])
                assert torch.allclose(value.double(), slow[key], atol=1e-6), key
                assert torch.equal(value, look.state_dict()[key])  # the model restarts from the slow weights
            else:
                assert torch.equal(value.double(), fast[key])  # num_batches_tracked is the model's
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_a_checkpoint_of_another_model_is_refused_naming_it():
    look = Lookahead(_bn_net(), steps=2, alpha=0.5)
    with pytest.raises(InputError, match=r"its lookahead weights do not fit this config's model \(no 0.weight"):
        look.load_state_dict({})
    other = {k: torch.zeros(1) for k in look.state_dict()}
    with pytest.raises(InputError, match=r"0.weight is \(1,\), the model's \(4, 3, 3, 3\)"):
        look.load_state_dict(other)


@pytest.mark.parametrize(
    ("sets", "needle"),
    [(["train.lookahead_steps=-1"], "train.lookahead_steps must be >= 0"),
     (["train.lookahead_steps=5", "train.lookahead_alpha=0.0"], "train.lookahead_alpha must be in (0, 1]"),
     (["train.lookahead_alpha=1.5"], "train.lookahead_alpha must be in (0, 1]"),
     (["train.lookahead_steps=5", "parallel.mode=average", "parallel.average_every=4"],
      "train.lookahead_steps with parallel.average_every > 1")],
)  # fmt: skip
def test_bad_lookahead_settings_exit_2_with_one_line(sets, needle, capsys, tmp_path):
    args = [x for item in sets for x in ("--set", item)]
    assert cli("train", CONFIG, "--out", tmp_path / "run", *args) == 2
    one_line(capsys, needle)
    assert not (tmp_path / "run").exists()


def _sets(data, **extra) -> list[str]:
    """The EMA resume test's run (test_ema_budget), with Lookahead in place of the EMA."""
    return _ema_sets(data, **{"train.ema": 0, "train.lookahead_steps": 4, "train.max_steps": 7, **extra})


@pytest.mark.slow
def test_a_lookahead_run_resumed_mid_cycle_is_exact(demo_prepared, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli("train", CONFIG, "--out", whole, *_sets(demo_prepared)) == 0
    # stopped at step 3, between the k-th steps (4 and 8): the slow weights are not the model's
    assert cli("train", CONFIG, "--out", split, *_sets(demo_prepared, **{"train.max_steps": 3})) == 0
    at3 = torch.load(split / "checkpoints" / "step-00000003.pt", weights_only=True)
    assert not torch.equal(at3["lookahead"]["features.conv1.weight"], at3["model"]["features.conv1.weight"])
    assert cli("train", CONFIG, "--out", split, "--resume", "auto", *_sets(demo_prepared)) == 0
    a = torch.load(whole / "checkpoints" / "step-00000007.pt", weights_only=True)
    b = torch.load(split / "checkpoints" / "step-00000007.pt", weights_only=True)
    for part in ("model", "lookahead"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    # without Lookahead the same steps end elsewhere: the switch does something
    plain = tmp_path / "plain"
    assert cli("train", CONFIG, "--out", plain, *_sets(demo_prepared, **{"train.lookahead_steps": 0})) == 0
    c = torch.load(plain / "checkpoints" / "step-00000007.pt", weights_only=True)
    assert "lookahead" not in c and not torch.equal(a["model"]["features.conv1.weight"],
                                                    c["model"]["features.conv1.weight"])  # fmt: skip
