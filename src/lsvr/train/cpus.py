"""The CPUs a training process uses: torch's intra-op threads (train.threads) and the loader's
reading threads (data.workers), chosen from what the job has and the machine has free where
the config leaves them at 0.

OpenMP's threads spin while they wait: with as many threads as cores on a machine that other
processes also use, a small convnet fell from 1,897 to 163 images/s under a load of 5 on 2
cores (TRAPS.md). So `train.threads: 0` takes the CPUs other work leaves free (measured over
0.2 s at the start), and where other work is running OMP_WAIT_POLICY=PASSIVE is set before
torch is imported unless the user set a policy.
A checkpoint records the thread count (another count changes a CPU run's bits): a resume with
`train.threads: 0` takes the checkpoint's count, so it continues bitwise as it began.
"""

from __future__ import annotations

import os

from lsvr.cpus import busy_cpus, free_threads, job_cpus, local_world, process_share

WAIT_POLICY = "PASSIVE"  # OpenMP's threads sleep at once when idle instead of spinning against other processes


def quiet_openmp_waits() -> None:
    """OMP_WAIT_POLICY=PASSIVE where other work keeps a CPU busy at the start and the user set no
    policy: before `import torch` (OpenMP reads it when loaded). Not on an idle machine: there
    the spinning costs no one and PASSIVE cost a quarter of the demo's speed (717 against 967
    images/s with 2 threads on 2 cores; beside one busy process 2 threads ran at 306 images/s
    with the default policy, 1 thread with PASSIVE at 540)."""
    if "OMP_WAIT_POLICY" not in os.environ and busy_cpus() >= 0.5:
        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY


def choose_threads(configured: int, *, saved: int | None) -> tuple[int | None, str]:
    """torch's intra-op threads and why: None leaves torch's own count (OMP_NUM_THREADS)."""
    if configured:
        return configured, "train.threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return None, "OMP_NUM_THREADS"
    if saved:  # auto on a resume: the count that wrote the checkpoint, so its bits continue
        return min(saved, job_cpus()), "the checkpoint's"
    cpus = job_cpus()
    busy = busy_cpus()
    threads = free_threads(share=process_share(cpus), cpus=cpus, load=busy)
    return threads, f"auto: {cpus} CPUs, {busy:.1f} busy"


def choose_workers(configured: int) -> tuple[int, str]:
    """The loader's reading threads and why: the job's CPUs over its local processes where
    data.workers is 0 (a SLURM job of 32 CPUs for 8 GPUs: 4 each, not 8 each)."""
    if configured:
        return configured, "data.workers"
    cpus, processes = job_cpus(), local_world()
    return process_share(cpus, processes), f"auto: {cpus} CPUs / {processes} processes"
