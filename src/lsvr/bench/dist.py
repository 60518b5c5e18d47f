"""`lsvr bench dist`: the training step at world 1 and 2 on this machine, and what the
gradient exchange costs on its own.

The parent launches this module twice through torchrun (`--standalone`, 1 then 2
processes, one thread each: torchrun sets OMP_NUM_THREADS=1 only in some launches, so it
is set here), each run timing `--steps` DDP steps on a resident synthetic batch of the
same global size, then an all-reduce of the model's gradient bytes alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lsvr.bench.timing import environment
from lsvr.errors import InputError
from lsvr.models.registry import build_model, model_spec
from lsvr.train.parallel import launch_env


def _timed(fn, repeats: int) -> float:
    """Median seconds of fn() over repeats, every rank starting together."""
    times = []
    for _ in range(repeats):
        if dist.is_initialized():
            dist.barrier()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def worker(out: Path, model_name: str, global_batch: int, steps: int) -> None:
    """One process of a torchrun launch: time the DDP step and the bare all-reduce."""
    torch.set_num_threads(1)
    launch = launch_env()
    world = launch.world
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    spec = model_spec(model_name)
    model = build_model(model_name, num_classes=1000, in_channels=3, crop=spec.default_crop)
    net = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True) if world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    per_rank = global_batch // world
    images = torch.randn(per_rank, 3, spec.default_crop, spec.default_crop)
    labels = torch.randint(0, 1000, (per_rank,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()

    step()  # warm-up: allocations, DDP's buckets
    step_s = _timed(step, steps)
    params = sum(p.numel() for p in model.parameters())
    flat = torch.zeros(params)
    allreduce_s = _timed(lambda: dist.all_reduce(flat), max(3, steps)) if world > 1 else 0.0
    if launch.is_main:
        out.write_text(json.dumps({"world": world, "step_s": step_s, "allreduce_s": allreduce_s, "params": params,
                                   "per_rank_batch": per_rank}))  # fmt: skip
    if world > 1:
        dist.barrier()  # a rank that tears down while its peer still talks to it aborts in gloo
        dist.destroy_process_group()


def _launch(nproc: int, out: Path, model: str, batch: int, steps: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "lsvr.bench.dist", str(out), model, str(batch), str(steps)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line and "ChildFailedError" not in line]
        # no Python error (a worker killed by a signal): the root cause's exit code and the first line
        exits = [line for line in lines if line.startswith("exitcode")][-1:]
        reason = errors[0] if errors else "; ".join(lines[:1] + exits) or f"exit status {result.returncode}"
        raise InputError(f"bench dist: the world-{nproc} run failed: {reason}")
    return json.loads(out.read_text())


def bench_dist(*, model: str, batch: int, steps: int, as_json: bool) -> dict:
    model_spec(model)  # an unknown name is an input error here, not in the workers
    if batch % 2:
        raise InputError(f"--batch {batch} does not divide by the world size 2")
    with tempfile.TemporaryDirectory() as folder:
        one = _launch(1, Path(folder) / "one.json", model, batch, steps)
        two = _launch(2, Path(folder) / "two.json", model, batch, steps)
    gradient_mb = one["params"] * 4 / 1e6
    compute_share = two["step_s"] and (one["step_s"] / 2) / two["step_s"]
    result = {
        "benchmark": "dist",
        "settings": {"model": model, "global_batch": batch, "steps": steps, "threads_per_process": 1},
        "environment": environment(2),
        "step_s": {"world_1": round(one["step_s"], 4), "world_2": round(two["step_s"], 4)},
        "speedup": round(one["step_s"] / two["step_s"], 3),
        "scaling_efficiency": round(one["step_s"] / (2 * two["step_s"]), 3),
        "gradient_mb": round(gradient_mb, 1),
        "allreduce_s": round(two["allreduce_s"], 4),
        "allreduce_gb_per_s": round(gradient_mb / 1e3 / two["allreduce_s"], 3) if two["allreduce_s"] else None,
        "allreduce_share_of_step": round(two["allreduce_s"] / two["step_s"], 3),
        "exposed_comm_s": round(max(0.0, two["step_s"] - one["step_s"] / 2), 4),
        "ideal_compute_share": round(compute_share, 3),
    }
    lines = [
        f"model {model}, global batch {batch}: step {one['step_s']:.3f} s at world 1, {two['step_s']:.3f} s at"
        f" world 2 (speedup {result['speedup']:.2f}, efficiency {result['scaling_efficiency']:.2f})",
        f"all-reduce of the {gradient_mb:.0f} MB gradient alone: {two['allreduce_s']:.3f} s"
        f" ({result['allreduce_share_of_step']:.0%} of the world-2 step); exposed: {result['exposed_comm_s']:.3f} s",
    ]
    print(json.dumps(result, indent=2) if as_json else "\n".join(lines))
    return result


if __name__ == "__main__":  # a torchrun worker
    worker(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
