"""Data parallelism under torchrun (gloo, 2 processes on CPU): equivalence with one process,
the paper's averaging, elastic resume across world sizes, two nodes, a dead or hung peer."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tests.support import ROOT

from lsvr.data.dataset import PreparedDataset
from lsvr.data.loader import Loader

pytestmark = pytest.mark.slow  # torchrun, two processes per test

CONFIG = ROOT / "configs" / "debug.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list, *, nproc: int = 1, nnodes: int = 1, port: int | None = None, timeout: float = 180,
             background: bool = False):  # fmt: skip
    """`torchrun ... tests/dist_worker.py ARGS` bound to localhost, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}  # fmt: skip
    if nnodes == 1:
        where = ["--standalone"] if port is None else ["--master-addr", "127.0.0.1", "--master-port", str(port)]
    else:
        where = ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                 "--rdzv-id", f"lsvr-test-{port}"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *where,
               str(ROOT / "tests" / "dist_worker.py"), *map(str, args)]  # fmt: skip
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def settings(demo_prepared: Path, **extra) -> list[str]:
    base = {"data.train": demo_prepared / "train", "data.val": "null", "train.max_steps": 5, "train.log_every": 1,
            "optim.lr": 0.01, "parallel.timeout_s": 60}  # fmt: skip
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def run(tmp: Path, name: str, demo_prepared: Path, *, nproc: int, resume: bool = False, **extra) -> Path:
    out = tmp / name
    result = torchrun([CONFIG, out, tmp / name, *(["--resume"] if resume else []), *settings(demo_prepared, **extra)],
                      nproc=nproc)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def weights(out: Path) -> dict[str, torch.Tensor]:
    latest = (out / "checkpoints" / "latest").read_text().strip()
    return torch.load(out / "checkpoints" / latest, weights_only=True)["model"]


def assert_close(a: dict, b: dict, rtol: float = 1e-5) -> None:
    """All the weights as one vector, to rtol relative. One step's gradient over 2 x 16
    differs from one over 32 by 1e-6 in float32 (summation order), and a small tensor such
    as a bias drifts to a few 1e-5 of its own norm in 5 steps: the whole vector is the test."""
    diff = sum(float((a[k].double() - b[k].double()).square().sum()) for k in a)
    norm = sum(float(a[k].double().square().sum()) for k in a)
    assert (diff / norm) ** 0.5 < rtol, (diff / norm) ** 0.5


def prints(record: Path, rank: int) -> dict[int, str]:
    return dict(json.loads(Path(f"{record}.rank{rank}.json").read_text()))


@pytest.fixture(scope="module")
def single(demo_prepared, tmp_path_factory) -> Path:
    """World 1, batch 32, 5 steps: what every world-2 run must reproduce."""
    return run(tmp_path_factory.mktemp("single"), "one", demo_prepared, nproc=1)


def test_rank_slices_of_a_global_batch_are_disjoint_halves(demo_prepared):
    ds = PreparedDataset(demo_prepared / "train")
    whole = Loader(ds, batch_size=32, shuffle=True, seed=0, crop=28)
    halves = [Loader(ds, batch_size=16, shuffle=True, seed=0, crop=28, rank=r, world=2) for r in range(2)]
    for step, batch in enumerate(whole.batches(0)):
        parts = [next(iter(h.batches(0, start_step=step))) for h in halves]
        assert [len(p.labels) for p in parts] == [16, 16]
        for i, drawn in enumerate(batch.draws.tensors()):  # the draws follow the global positions
            assert torch.equal(torch.cat([p.draws.tensors()[i] for p in parts]), drawn)
        assert torch.equal(torch.cat([p.images for p in parts]), batch.images)
        if step == 2:
            break


@pytest.mark.parametrize("mode", ["ddp", "average"])
def test_world_2_equals_world_1_for_5_steps(single, demo_prepared, tmp_path, mode):
    out = run(tmp_path, mode, demo_prepared, nproc=2, **{"parallel.mode": mode})
    assert_close(weights(single), weights(out))
    ranks = [prints(tmp_path / mode, r) for r in (0, 1)]
    assert ranks[0] == ranks[1] and len(ranks[0]) == 5  # the replicas agree after every step


def test_average_every_4_syncs_every_4th_step_and_learns(demo_prepared, tmp_path):
    out = run(tmp_path, "local", demo_prepared, nproc=2, **{"parallel.mode": "average",
              "parallel.average_every": 4, "train.max_steps": 24})  # fmt: skip
    ranks = [prints(tmp_path / "local", r) for r in (0, 1)]
    for step in range(1, 25):
        assert (ranks[0][step] == ranks[1][step]) == (step % 4 == 0), step
    losses = [
        r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"
    ]
    assert len(losses) == 24 and sum(losses[-4:]) < sum(losses[:4])


@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_at_another_world_size(single, demo_prepared, tmp_path, first, then):
    run(tmp_path, "run", demo_prepared, nproc=first, **{"train.max_steps": 3})
    out = run(tmp_path, "run", demo_prepared, nproc=then, resume=True)
    state = torch.load(sorted((out / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    assert state["step"] == 5 and state["loader"] == {"epoch": 0, "step": 5, "sample": 160, "global_batch": 32}
    assert_close(weights(single), weights(out))


def test_two_torchrun_agents_on_localhost_make_one_job(single, demo_prepared, tmp_path):
    port = free_port()
    args = [CONFIG, tmp_path / "nodes", tmp_path / "nodes", *settings(demo_prepared)]
    agents = [torchrun(args, nnodes=2, port=port, background=True) for _ in range(2)]
    for agent in agents:
        _, err = agent.communicate(timeout=180)
        assert agent.returncode == 0, err[-3000:]
    assert_close(weights(single), weights(tmp_path / "nodes"))
    assert prints(tmp_path / "nodes", 0) == prints(tmp_path / "nodes", 1)


def test_validation_counts_every_image_once_across_ranks(demo_prepared, tmp_path):
    out = run(tmp_path, "val", demo_prepared, nproc=2, **{"data.holdout": 101, "train.max_steps": 2})
    val = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "val"]
    assert val and val[-1]["images"] == 101


@pytest.mark.parametrize("kind", ["die", "hang"])
def test_a_dead_or_hung_peer_fails_the_job_within_the_timeout(demo_prepared, tmp_path, kind):
    timeout = 8
    fault = {"debug.fault": kind, "debug.rank": 1, "debug.step": 3}
    fault.update({"train.max_steps": 50, "parallel.timeout_s": timeout})
    args = [CONFIG, tmp_path / kind, "-", *settings(demo_prepared, **fault)]
    started = time.time()
    result = torchrun(args, nproc=2, timeout=timeout + 120)
    took = time.time() - started
    assert result.returncode != 0
    assert took < timeout + 60, took  # start-up (two processes importing torch) included
    # the survivor says why (a dead peer may also be seen by torchrun first, which names its exit code)
    assert "a peer process died or stopped answering" in result.stderr or "SIGKILL" in result.stderr


def test_bf16_gradient_exchange_trains_close_to_fp32(single, demo_prepared, tmp_path):
    out = run(tmp_path, "bf16", demo_prepared, nproc=2, **{"parallel.compress": "bf16"})
    assert_close(weights(single), weights(out), rtol=1e-2)  # bf16 keeps 8 bits of mantissa


def test_a_global_batch_that_does_not_divide_by_the_world_is_refused(demo_prepared, tmp_path):
    result = torchrun([CONFIG, tmp_path / "odd", "-", *settings(demo_prepared, **{"train.global_batch": 33})], nproc=2)
    # said once, by rank 0 (every rank printed it before); torchrun's report carries rank 0's status 2
    said = (result.stdout + result.stderr).count("train.global_batch=33 does not divide by world size 2")
    assert result.returncode != 0 and said == 1, result.stderr[-3000:]
    assert "exitcode  : 2" in result.stderr and not (tmp_path / "odd").exists(), result.stderr[-3000:]
