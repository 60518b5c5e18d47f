"""The CPUs a process may use and those other work leaves free: what `lsvr train` sizes its
threads from (lsvr.train.cpus) and `lsvr predict` its decoding threads and torch's.

OpenMP's threads spin while they wait: with as many threads as cores on a machine that other
processes also use, a small convnet fell from 1,897 to 163 images/s under a load of 5 on 2
cores (TRAPS.md), so threads are chosen from the CPUs the load leaves free.
"""

from __future__ import annotations

import math
import os
import time


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


def threads_free() -> int:
    """This process's share of the job's CPUs, at most those other work leaves free now (busy_cpus
    waits 0.2 s to measure them), at least 1."""
    cpus = job_cpus()
    return free_threads(share=process_share(cpus), cpus=cpus, load=busy_cpus())
