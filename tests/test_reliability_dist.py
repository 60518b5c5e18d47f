"""Nothing lost at world 2 (torchrun, gloo): exact resume after a rank is killed, SIGTERM to
the whole job, a dead worker restarted by torchrun, a NaN on one rank."""

import signal

import pytest
from tests.support import final_weights, logged_steps, max_difference, torchrun_train, uninterrupted, wait_for

from lsvr.runs import checkpoints

pytestmark = pytest.mark.slow  # torchrun, two processes per test


@pytest.fixture(scope="module")
def whole(tiny_data, tmp_path_factory):
    """The uninterrupted world-2 run: 3 epochs of 5 steps, deterministic, dropout on."""
    return uninterrupted(torchrun_train, tiny_data, tmp_path_factory.mktemp("whole2"))


def test_resume_after_one_rank_is_killed_is_bitwise_exact(tiny_data, whole, tmp_path):
    out = tmp_path / "run"
    killed = torchrun_train(out, tiny_data, **{"debug.fault": "die", "debug.rank": 1, "debug.step": 8})
    assert killed.returncode != 0
    resumed = torchrun_train(out, tiny_data, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert max_difference(whole, final_weights(out)) == 0.0


def test_a_killed_worker_is_restarted_by_torchrun_and_resumes_by_itself(tiny_data, whole, tmp_path):
    out = tmp_path / "run"
    result = torchrun_train(out, tiny_data, restarts=1, **{"debug.fault": "die", "debug.rank": 1, "debug.step": 8})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr  # the restarted workers found the run folder's checkpoint
    assert max_difference(whole, final_weights(out)) == 0.0


def test_sigterm_to_torchrun_stops_every_worker_with_a_checkpoint(tiny_data, whole, tmp_path):
    out = tmp_path / "run"
    job = torchrun_train(out, tiny_data, background=True, **{"checkpoint.every_steps": 100})
    wait_for(lambda: logged_steps(out / "metrics.jsonl") >= 4, what="step 4 in metrics.jsonl")
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert "checkpoint saved" in err, err[-3000:]
    assert job.returncode != 0  # torchrun itself exits non-zero when its agent is signalled (see RELIABILITY.md)
    assert checkpoints.load(checkpoints.find(out))["step"] >= 4
    resumed = torchrun_train(out, tiny_data, "--resume", "auto", **{"checkpoint.every_steps": 100})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert max_difference(whole, final_weights(out)) == 0.0


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_nan_on_one_rank_is_seen_by_every_rank_at_the_same_step(tiny_data, tmp_path, policy):
    out = tmp_path / "run"
    result = torchrun_train(out, tiny_data, **{"debug.fault": "nan", "debug.rank": 1, "debug.step": 5,
                                          "guard.nonfinite": policy})  # fmt: skip
    if policy == "stop":
        assert result.returncode != 0 and result.stderr.count("lsvr train: stopped: non-finite loss at step 5") == 1
        assert checkpoints.load(checkpoints.find(out))["step"] == 4  # the last good checkpoint, intact
    else:
        assert result.returncode == 0 and "step 5: non-finite loss, update skipped" in result.stderr
        assert checkpoints.load(checkpoints.find(out))["step"] == 15
