"""A refusal under torchrun is said once, by rank 0; the other ranks exit 2 without a word."""

import pytest
from tests.support import torchrun_train


@pytest.mark.slow
def test_a_refusal_every_rank_meets_is_said_once(tiny_data, tmp_path):
    result = torchrun_train(tmp_path / "run", tiny_data, **{"train.global_batch": 33})
    said = (result.stdout + result.stderr).count("train.global_batch=33 does not divide by world size 2")
    assert result.returncode != 0 and said == 1, result.stderr[-3000:]
    assert "exitcode  : 2" in result.stderr or "exitcode: 2" in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "run").exists()
