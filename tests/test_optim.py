import re

import pytest
import torch
from torch import nn

from lsvr.config import OptimConfig
from lsvr.config_file import from_dict
from lsvr.errors import InputError
from lsvr.train.optim import Schedule, build_optimizer


def test_paper_update_rule_across_an_lr_drop():
    """v = m*v - lr*(g + wd*W); W += v, biases at 2x lr without decay, for 4 steps with the
    lr divided by 10 after step 2 (the drop is where torch's SGD would differ)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    cfg = OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.01, bias_lr_mult=2.0, lr_steps=[1], schedule="step")
    opt = build_optimizer(model, cfg)
    schedule = Schedule(cfg, steps_per_epoch=2, total_steps=4)
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    lrs = []
    for step in range(4):
        lr = schedule.apply(opt, step)
        lrs.append(lr)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        gw, gb = model.weight.grad.clone(), model.bias.grad.clone()
        opt.step()
        vw = 0.9 * vw - lr * (gw + 0.01 * w)
        vb = 0.9 * vb - 2 * lr * gb  # biases: 2x lr, no decay
        w, b = w + vw, b + vb
        assert torch.allclose(model.weight, w, atol=1e-6), step
        assert torch.allclose(model.bias, b, atol=1e-6), step
    assert lrs == [0.1, 0.1, 0.010000000000000002, 0.010000000000000002]


def test_torch_sgd_differs_after_the_drop():
    """The reason PaperSGD exists: torch's SGD rescales the whole velocity at an lr drop."""
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    cfg = OptimConfig(lr=0.1, weight_decay=0.0, bias_lr_mult=1.0, lr_steps=[1])
    paper = build_optimizer(a, cfg)
    plain = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    for step in range(3):
        lr = 0.1 if step < 2 else 0.01
        for g in paper.param_groups + plain.param_groups:
            g["lr"] = lr
        for model, opt in ((a, paper), (b, plain)):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        if step < 2:
            assert torch.allclose(a.weight, b.weight, atol=1e-6)
    assert not torch.allclose(a.weight, b.weight, atol=1e-4)


def test_groups_and_schedules():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    opt = build_optimizer(model, OptimConfig(weight_decay=5e-4, bias_lr_mult=2.0))
    by_mult = {(g["lr_mult"], g["weight_decay"]): len(g["params"]) for g in opt.param_groups}
    assert by_mult == {(1.0, 5e-4): 1, (2.0, 0.0): 2, (1.0, 0.0): 1}
    cosine = Schedule(OptimConfig(lr=1.0, schedule="cosine", warmup_epochs=1), steps_per_epoch=10, total_steps=110)
    assert cosine.factor(0) == 0.1 and cosine.factor(9) == 1.0
    assert abs(cosine.factor(60) - 0.5) < 1e-9 and cosine.factor(110) == 0.0
    step = Schedule(OptimConfig(lr_steps=[20, 40]), steps_per_epoch=5, total_steps=300)
    assert [step.factor(s) for s in (99, 100, 199, 200)] == [1.0, 0.1, 0.1, 0.1**2]


def test_linear_lr_scaling_follows_the_global_batch_not_the_world():
    from lsvr.config import OptimConfig
    from lsvr.train.optim import Schedule

    plain = Schedule(OptimConfig(lr=0.01), steps_per_epoch=10, total_steps=100, global_batch=1024)
    linear = Schedule(OptimConfig(lr=0.01, scale_lr="linear"), steps_per_epoch=10, total_steps=100, global_batch=1024)
    assert plain.base_lr == 0.01 and abs(linear.base_lr - 0.04) < 1e-12


def test_torchvisions_classic_rule_decays_every_parameter_at_one_lr():
    """decay_biases, decay_norms and bias_lr_mult=1: wd on every parameter, one lr (the groups stay
    apart, in the same order, so an optimizer state loads whatever the flags)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    cfg = OptimConfig(weight_decay=1e-4, decay_biases=True, decay_norms=True, bias_lr_mult=1.0)
    groups = build_optimizer(model, cfg).param_groups
    assert [(len(g["params"]), g["weight_decay"], g["lr_mult"]) for g in groups] == [(1, 1e-4, 1.0), (2, 1e-4, 1.0),
                                                                                        (1, 1e-4, 1.0)]  # fmt: skip
    only_norms = build_optimizer(model, OptimConfig(weight_decay=1e-4, decay_norms=True)).param_groups
    assert [g["weight_decay"] for g in only_norms] == [1e-4, 0.0, 1e-4]


def test_vits_class_token_and_position_embedding_go_with_the_norms():
    from lsvr.models.vit import VisionTransformer

    vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8,
                            num_classes=3)  # fmt: skip
    weights, _, norms = build_optimizer(vit, OptimConfig()).param_groups
    norm_ids = {id(p) for p in norms["params"]}
    assert id(vit.class_token) in norm_ids and id(vit.encoder.pos_embedding) in norm_ids
    assert all(p.ndim >= 2 for p in weights["params"]) and norms["weight_decay"] == 0.0


def test_adamw_follows_its_formula_per_group_across_an_lr_drop():
    """torch's AdamW under lsvr's groups and schedule: decoupled decay on the weight only, the bias at
    2x lr, 3 steps with the lr divided by 10 before the last."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    cfg = OptimConfig(name="adamw", lr=0.01, weight_decay=0.05, betas=[0.8, 0.99], eps=1e-6, lr_steps=[1])
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    schedule = Schedule(cfg, steps_per_epoch=2, total_steps=3)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    expect = {"w": model.weight.detach().clone(), "b": model.bias.detach().clone()}
    moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in expect.items()}
    for step in range(3):
        lr = schedule.apply(opt, step)
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        grads = {"w": model.weight.grad.clone(), "b": model.bias.grad.clone()}
        opt.step()
        for key, lr_k, wd in (("w", lr, 0.05), ("b", 2 * lr, 0.0)):
            m, v = moments[key]
            m.mul_(0.8).add_(grads[key], alpha=0.2)
            v.mul_(0.99).addcmul_(grads[key], grads[key], value=0.01)
            p = expect[key] * (1 - lr_k * wd)
            m_hat, v_hat = m / (1 - 0.8 ** (step + 1)), v / (1 - 0.99 ** (step + 1))
            expect[key] = p - lr_k * m_hat / (v_hat.sqrt() + 1e-6)
        assert torch.allclose(model.weight, expect["w"], atol=1e-6), step
        assert torch.allclose(model.bias, expect["b"], atol=1e-6), step


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"betas": [0.9, 1.0]}, "optim.betas must be two numbers in [0, 1)"),
        ({"betas": [0.9]}, "optim.betas must be two numbers in [0, 1)"),
        ({"eps": 0.0}, "optim.eps must be > 0"),
        ({"name": "adamw", "nesterov": True}, "optim.nesterov=true is sgd's"),
        ({"name": "adam"}, "optim.name must be one of sgd, adamw"),
    ],
)
def test_bad_adamw_settings_are_refused(override, message):
    with pytest.raises(InputError, match=re.escape(message)):
        from_dict({"optim": override})
