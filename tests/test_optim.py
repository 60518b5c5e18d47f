import torch
from torch import nn

from lsvr.config import OptimConfig
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
