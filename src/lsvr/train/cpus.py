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

import math
import os
import time

WAIT_POLICY = "PASSIVE"  # OpenMP's threads sleep at once when idle instead of spinning against other processes


def quiet_openmp_waits() -> None:
    """OMP_WAIT_POLICY=PASSIVE where other work keeps a CPU busy at the start and the user set no
    policy: before `import torch` (OpenMP reads it when loaded). Not on an idle machine: there
    the spinning costs no one and PASSIVE cost a quarter of the demo's speed (717 against 967
    images/s with 2 threads on 2 cores; beside one busy process 2 threads ran at 306 images/s
    with the default policy, 1 thread with PASSIVE at 540)."""
    if "OMP_WAIT_POLICY" not in os.environ and busy_cpus() >= 0.5:
        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY


def job_cpus() -> int:
    """The CPUs this job may run on: the affinity mask, at most SLURM_CPUS_PER_TASK where SLURM
    set it (a task without CPU binding sees the whole node)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cpus, int(slurm)) if slurm.isdigit() and int(slurm) > 0 else cpus


def local_world() -> int:
    """The processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 alone)."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def process_share(cpus: int | None = None, processes: int | None = None) -> int:
    """This process's share of the job's CPUs: at least 1."""
    return max(1, (cpus or job_cpus()) // (processes or local_world()))


def free_threads(*, share: int, cpus: int, load: float) -> int:
    """Threads for this process: its share of the CPUs, at most the CPUs the load leaves free
    (rounded to the nearer CPU), at least 1. `load`: the CPUs busy with other work."""
    free = cpus - math.floor(load + 0.5)
    return max(1, min(share, free))


def busy_cpus(seconds: float = 0.2) -> float:
    """How many of this process's CPUs other work keeps busy now: their busy time in /proc/stat
    over `seconds` (this process waits meanwhile). Not the 1-minute load average: it still
    counts a command that just ended (the demo's prepare), and all of a node's CPUs."""
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None

    def times() -> dict[str, tuple[int, int]]:  # cpu name -> (idle + iowait, total) jiffies
        found = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name[:3] == "cpu" and name[3:].isdigit() and (mine is None or int(name[3:]) in mine):
                    ticks = [int(x) for x in fields[:8]]
                    found[name] = (ticks[3] + ticks[4], sum(ticks))
        return found

    try:
        before = times()
        time.sleep(seconds)
        after = times()
    except (OSError, ValueError, IndexError):  # no /proc (not Linux): the load average
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = 0.0
    for name, (idle, total) in after.items():
        elapsed = total - before.get(name, (idle, total))[1]
        if elapsed > 0:
            busy += 1 - (idle - before[name][0]) / elapsed
    return busy


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
