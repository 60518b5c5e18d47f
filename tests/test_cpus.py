"""Threads and loader workers chosen from the CPUs the job has and the machine has free
(issue 28, items 27 and 28): train.threads: 0 and data.workers: 0, OMP_WAIT_POLICY, the presets."""

import os
import subprocess
import sys
import time

import pytest
from tests.support import ROOT

from lsvr.config_file import load_config
from lsvr.train import cpus


@pytest.fixture
def machine(monkeypatch):
    """A machine of `n` CPUs (the affinity mask), `load` of them busy with other work; no thread
    or SLURM variable set."""

    def set_machine(n: int, load: float = 0.0) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.setattr(cpus, "busy_cpus", lambda seconds=0.2: load)

    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    return set_machine


@pytest.mark.parametrize(("n", "load", "threads"), [(2, 0.1, 2), (2, 1.2, 1), (2, 5.0, 1), (16, 3.4, 13)])
def test_auto_threads_take_the_cores_other_work_leaves_free(machine, n, load, threads):
    machine(n, load)
    assert cpus.choose_threads(0, saved=None)[0] == threads


def test_threads_set_by_the_config_the_environment_or_a_checkpoint_are_kept(machine, monkeypatch):
    machine(2, 1.5)
    assert cpus.choose_threads(2, saved=1) == (2, "train.threads")
    assert cpus.choose_threads(0, saved=2) == (2, "the checkpoint's")  # a resume continues bitwise
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpus.choose_threads(0, saved=2)[0] is None  # torch's own count, which reads it


def test_openmp_threads_sleep_when_idle_on_a_busy_machine_unless_the_user_says(machine, monkeypatch):
    machine(2, 0.1)
    cpus.quiet_openmp_waits()
    assert "OMP_WAIT_POLICY" not in os.environ  # idle: spinning costs no one, PASSIVE costs speed
    machine(2, 1.0)
    cpus.quiet_openmp_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cpus.quiet_openmp_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_workers_are_the_jobs_cpus_over_its_local_processes(machine, monkeypatch):
    machine(64)  # a node of 64 CPUs; SLURM gave the job 32 for 8 GPUs (scripts/slurm/train.sbatch)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "32")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert cpus.choose_workers(0)[0] == 4
    assert cpus.choose_workers(6) == (6, "data.workers")
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert cpus.choose_workers(0)[0] == 8  # the affinity mask alone
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "128")
    assert cpus.choose_workers(0)[0] == 1


def test_the_presets_leave_threads_and_workers_to_the_machine(machine, monkeypatch):
    demo = load_config(ROOT / "configs" / "demo.yaml", [])
    assert demo.train.threads == 0  # was 2: 215-276 img/s on a busy 2-core machine against 962 with 1
    imagenet = load_config(ROOT / "configs" / "resnet50_imagenet.yaml", [])
    machine(64)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "32")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert cpus.choose_workers(imagenet.data.workers)[0] == 4  # was 8 per process: 64 threads on 32 CPUs


def test_doctor_advises_threads_from_the_free_cores(machine):
    from lsvr.doctor import diagnose

    machine(2, 1.3)  # one other busy process on 2 cores
    advice = diagnose(None)["recommend"]
    assert advice["train.threads"] == 1
    assert "1.3 of them busy" in advice["why"][0] and "spin" in advice["why"][0]


@pytest.mark.slow
def test_busy_cpus_sees_a_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert cpus.busy_cpus(0.5) >= 0.8  # the loop's CPU, whatever else runs
    finally:
        busy.kill()
        busy.wait()
