"""The optimizers in real runs: AdamW trains and resumes exactly; weight averaging
(parallel.mode=average) averages every optimizer state over 2 gloo ranks."""

import pytest
import torch
from tests.support import final_weights, max_difference, train


@pytest.mark.slow
def test_an_adamw_run_resumes_bitwise(tiny_data, tmp_path):
    adamw = {"optim.name": "adamw", "optim.lr": 0.001, "optim.weight_decay": 0.05, "optim.bias_lr_mult": 1.0}
    assert train(tmp_path / "whole", tiny_data, **adamw, **{"train.max_steps": 4}) == 0
    assert train(tmp_path / "broken", tiny_data, **adamw, **{"train.max_steps": 2}) == 0
    assert train(tmp_path / "broken", tiny_data, "--resume", "auto", **adamw, **{"train.max_steps": 4}) == 0
    assert max_difference(final_weights(tmp_path / "whole"), final_weights(tmp_path / "broken")) == 0.0
    latest = tmp_path / "broken" / "checkpoints" / (tmp_path / "broken" / "checkpoints" / "latest").read_text().strip()
    state = torch.load(latest, weights_only=True)["optimizer"]["state"]
    assert all({"exp_avg", "exp_avg_sq", "step"} <= set(s) and float(s["step"]) == 4 for s in state.values())


def _snapshot(model, optimizer) -> dict:
    """Copies of every parameter ("param<i>") and of its optimizer state ("param<i>.<key>")."""
    state = {f"param{i}": p.detach().clone() for i, p in enumerate(model.parameters())}
    for i, p in enumerate(model.parameters()):
        state.update({f"param{i}.{k}": v.clone() for k, v in optimizer.state[p].items()})
    return state


def _average_worker(rank: int, store: str, out: str) -> None:
    """One of 2 gloo ranks: a model per optimizer, 2 steps on this rank's own data (so that
    the replicas differ), every tensor saved before and after average_replicas."""
    import torch.distributed as dist
    from torch import nn

    from lsvr.config import OptimConfig
    from lsvr.train.optim import build_optimizer
    from lsvr.train.parallel import Distributed, average_replicas

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    env = Distributed(rank=rank, world=2, local_rank=rank, device=torch.device("cpu"))
    torch.manual_seed(rank)
    saved = {}
    for name in ("sgd", "adamw"):
        model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
        optimizer = build_optimizer(model, OptimConfig(name=name, lr=0.01))
        for _ in range(2):
            optimizer.zero_grad()
            model(torch.randn(8, 4)).square().mean().backward()
            optimizer.step()
        before = _snapshot(model, optimizer)
        average_replicas(model, optimizer, env)
        saved[name] = {"before": before, "after": _snapshot(model, optimizer)}
    torch.save(saved, f"{out}.rank{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_weight_averaging_averages_every_optimizer_state(tmp_path, monkeypatch):
    """After an average, both ranks hold the same parameters, PaperSGD velocities and AdamW
    moments, each the mean of what the ranks held; AdamW's step count stays as it was."""
    import torch.multiprocessing as mp

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    out = tmp_path / "state"
    mp.spawn(_average_worker, args=(str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.rank{r}", weights_only=True) for r in (0, 1)]
    for name, moments in (("sgd", {"velocity"}), ("adamw", {"exp_avg", "exp_avg_sq"})):
        before = [r[name]["before"] for r in ranks]
        after = [r[name]["after"] for r in ranks]
        assert moments <= {key.split(".")[1] for key in before[0] if "." in key}
        for key, value in after[0].items():
            assert torch.equal(value, after[1][key]), (name, key)  # identical on both ranks
            if key.endswith(".step"):
                assert float(value) == 2.0 and torch.equal(value, before[0][key]), (name, key)
            else:
                assert not torch.equal(before[0][key], before[1][key]), (name, key)  # they did differ
                assert torch.allclose(value, (before[0][key] + before[1][key]) / 2, atol=1e-7), (name, key)
