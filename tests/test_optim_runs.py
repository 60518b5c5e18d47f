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
