"""Nothing lost: kills during saves, exact resume after kill -9 and SIGTERM, a full disk,
a NaN, a divergent run, unsafe files, and the safetensors export."""

import errno
import json
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from tests.support import cli, final_weights, logged_steps, max_difference, train_process, uninterrupted, wait_for

from lsvr import folders
from lsvr.runs import checkpoints
from lsvr.train import checkpoint, parallel
from lsvr.train.faults import KILL_POINTS
from lsvr.train.health import Health

KILLS_PER_POINT = 4


@pytest.fixture(scope="module")
def data(tiny_data):
    return tiny_data


@pytest.fixture(scope="module")
def whole(data, tmp_path_factory):
    """The uninterrupted run: 3 epochs of 5 steps, deterministic, dropout on."""
    return uninterrupted(train_process, data, tmp_path_factory.mktemp("whole"))


def kills_at(point: str, data, root) -> list[int]:
    """KILLS_PER_POINT runs into one folder, each killed at `point` of a save, each but the
    first resuming from what the last left; then a clean run to the end."""
    out, codes = root / point, []
    for attempt in range(KILLS_PER_POINT):
        latest = checkpoints.find(out)
        step = checkpoints.load(latest)["step"] if latest else 0
        first_save = step + (3 if point == "during-prune" else 1)  # pruning starts at the third file
        fault = {"debug.fault": "kill_save", "debug.point": point, "debug.step": first_save}
        # --resume auto also where a kill left no checkpoint: the folder's run starts again
        result = train_process(out, data, "--resume", "auto", **fault, **{"checkpoint.every_steps": 1})
        codes.append(result.returncode)
        if checkpoints.find(out) is not None:  # `latest` always loads
            checkpoints.load(checkpoints.find(out))
        assert attempt or codes[0] == -signal.SIGKILL
    final = train_process(out, data, "--resume", "auto", **{"checkpoint.every_steps": 1})
    assert final.returncode == 0, final.stderr[-2000:]
    assert not list((out / "checkpoints").glob(".*.tmp"))  # nothing partial survives a start
    return codes


@pytest.mark.slow
def test_kill_9_at_every_point_of_a_save_never_loses_latest(data, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        codes = dict(zip(KILL_POINTS, pool.map(lambda p: kills_at(p, data, tmp_path), KILL_POINTS), strict=True))
    kills = {point: sum(c == -signal.SIGKILL for c in got) for point, got in codes.items()}
    assert all(n == KILLS_PER_POINT for n in kills.values()), kills
    assert sum(kills.values()) >= 20
    (tmp_path / "kills.json").write_text(json.dumps(kills))


@pytest.mark.slow
def test_a_truncated_or_empty_newest_checkpoint_is_skipped_with_a_warning(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_process(out, data, **{"train.max_steps": 6}).returncode == 0
    steps = sorted((out / "checkpoints").glob("step-*.pt"))
    newest = steps[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    found = checkpoints.find_valid(out)
    assert found == steps[-2] and f"skipping the checkpoint {newest}" in capsys.readouterr().err
    newest.write_bytes(b"")
    assert checkpoints.find_valid(out) == steps[-2]
    result = train_process(out, data, "--resume", "auto", **{"train.max_steps": 8})
    assert result.returncode == 0 and str(newest) in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kill_step", [7, 11])  # inside epoch 2; the first step of epoch 3
def test_resume_after_kill_9_is_bitwise_exact(data, whole, tmp_path, kill_step):
    out = tmp_path / "run"
    killed = train_process(out, data, **{"debug.fault": "die", "debug.step": kill_step})
    assert killed.returncode == -signal.SIGKILL
    resumed = train_process(out, data, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert max_difference(whole, final_weights(out)) == 0.0


@pytest.mark.slow
def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resumes_exactly(data, whole, tmp_path):
    out = tmp_path / "run"
    run = train_process(out, data, background=True, **{"checkpoint.every_steps": 100})
    metrics = out / "metrics.jsonl"
    wait_for(lambda: logged_steps(metrics) >= 4, what="step 4 in metrics.jsonl")
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0 and "SIGTERM" in err and "checkpoint saved" in err, err[-2000:]
    stopped_at = checkpoints.load(checkpoints.find(out))["step"]
    assert 4 <= stopped_at < 15
    resumed = train_process(out, data, "--resume", "auto", **{"checkpoint.every_steps": 100})
    assert resumed.returncode == 0
    assert max_difference(whole, final_weights(out)) == 0.0


@pytest.mark.slow
def test_a_second_signal_exits_at_once(data, tmp_path):
    out = tmp_path / "run"
    run = train_process(out, data, background=True, **{"debug.fault": "hang", "debug.step": 3})
    # step 2 exchanged its stop flag: a SIGTERM from here on is read after step 3, which hangs
    wait_for(lambda: logged_steps(out / "metrics.jsonl") >= 2, what="step 2 in metrics.jsonl")
    run.send_signal(signal.SIGTERM)
    for line in run.stderr:  # the first signal was handled (its line), then the second
        if "stopping after this step" in line:
            break
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=30)
    assert run.returncode == -signal.SIGTERM


def test_a_full_disk_stops_cleanly_and_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".pt.tmp"):
            calls["n"] += 1
            if calls["n"] >= 2:  # the first checkpoint is written, the second finds the disk full
                return Full(handle)
        return handle

    monkeypatch.setattr(folders, "open", fake_open, raising=False)  # the one atomic writer's
    out = tmp_path / "run"
    args = ["--set", f"data.train={data}", "--set", "data.val=null", "--set", "checkpoint.every_steps=2",
            "--set", "train.max_steps=6"]  # fmt: skip
    assert cli("train", checkpoint.Path(__file__).parents[1] / "configs" / "debug.yaml", "--out", out, *args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "step-00000002.pt is intact" in err
    assert checkpoints.load(checkpoints.find(out))["step"] == 2
    assert not list((out / "checkpoints").glob(".*.tmp"))


@pytest.mark.slow
def test_a_diverging_run_stops_naming_the_step(data, tmp_path):
    result = train_process(tmp_path / "run", data, **{"optim.lr": 1e6, "checkpoint.every_steps": 1})
    assert result.returncode == 1 and "non-finite loss at step" in result.stderr
    latest = checkpoints.find(tmp_path / "run")
    if latest is not None:  # the last good checkpoint, intact: the lagged health check ran before each save
        weights = checkpoints.load(latest)["model"]
        assert all(torch.isfinite(w).all() for w in weights.values())


def test_health_flags_are_read_one_step_late_and_all_before_a_save():
    env = parallel.Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    health = Health(env, check_grads=True)
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.ones(3)
    health.exchange(1, torch.tensor(1.0), [weight], asked=False)
    assert health.settle(keep=1) == (None, False)  # step 1's flags wait behind it
    weight.grad = torch.tensor([1.0, float("inf"), 1.0])  # a finite loss, an infinite gradient
    norm = health.exchange(2, torch.tensor(1.0), [weight], asked=False)
    assert not torch.isfinite(norm)
    assert health.settle(keep=1) == (None, False)  # step 1: fine
    weight.grad = torch.ones(3)
    health.exchange(3, torch.tensor(float("nan")), [weight], asked=True)
    assert health.settle(keep=1) == (2, False)  # step 2 is found once step 3 is queued
    assert health.settle() == (3, True)  # before a save: everything
    assert health.settle() == (None, False)
    assert health.weights_finite([weight])
    with torch.no_grad():
        weight[1] = float("inf")  # an update that overflowed
    assert not health.weights_finite([weight])


def test_a_malicious_checkpoint_is_refused_and_its_payload_never_runs(data, tmp_path, capsys):
    import os

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "config": {}}, evil)
    assert cli("eval", evil, data) == 2
    assert "refused" in capsys.readouterr().err
    assert cli("predict", evil, data / "mean.npy") == 2
    assert not marker.exists()


@pytest.mark.slow
def test_export_to_safetensors_predicts_and_evaluates_as_the_checkpoint(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_process(out, data, **{"train.max_steps": 4}).returncode == 0
    assert cli("export", out, tmp_path / "model.safetensors") == 0
    capsys.readouterr()
    assert cli("eval", out, data, "--json") == 0
    from_checkpoint = json.loads(capsys.readouterr().out)
    assert cli("eval", tmp_path / "model.safetensors", data, "--json") == 0
    from_export = json.loads(capsys.readouterr().out)
    assert from_export["top1"] == from_checkpoint["top1"] and from_export["loss"] == from_checkpoint["loss"]


@pytest.mark.slow
def test_gradient_clipping_bounds_every_update(data, tmp_path):
    from tests.support import CONFIG

    def after(steps: int, clip: str) -> dict:
        out = tmp_path / f"s{steps}-c{clip}"
        sets = {"data.train": data, "data.val": "null", "train.max_steps": steps, "guard.clip_norm": clip,
                "optim.weight_decay": 0, "optim.momentum": 0, "checkpoint.every_steps": 0}  # fmt: skip
        assert cli("train", CONFIG, "--out", out, *[x for k, v in sets.items() for x in ("--set", f"{k}={v}")]) == 0
        return final_weights(out)

    assert max_difference(after(1, "0.000000001"), after(2, "0.000000001")) < 1e-8  # each step: lr x 1e-9
    assert max_difference(after(1, "0.0"), after(2, "0.0")) > 1e-4
