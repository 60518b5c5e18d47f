"""SLURM on CPU: SIGUSR1 (the `--signal=USR1@120` warning) saves, `scontrol requeue` puts the job
back, the requeued job continues bitwise; the sbatch template itself run under stand-in `srun`
and `scontrol`, at world 2, with the signal sent to torchrun."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import (
    CONFIG,
    ENV,
    ROOT,
    final_weights,
    logged_steps,
    max_difference,
    sets,
    torchrun_train,
    train_process,
    uninterrupted,
    wait_for,
)

from lsvr.runs import checkpoints

pytestmark = pytest.mark.slow
TEMPLATE = ROOT / "scripts" / "slurm" / "train.sbatch"
JOB = "4242"


def stand_ins(folder: Path) -> tuple[dict, Path]:
    """A PATH whose `scontrol` records each call (and names localhost as the job's node) and
    whose `srun` runs its command here; the environment of a one-node SLURM job."""
    bin_dir, calls = folder / "bin", folder / "scontrol-calls.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n[ "$1" = show ] && echo localhost\nexit 0\n')
    (bin_dir / "srun").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
    for tool in ("scontrol", "srun"):
        (bin_dir / tool).chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": JOB, "SLURM_NNODES": "1",
           "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_NAME": "lsvr-test"}  # fmt: skip
    return env, calls


def test_sigusr1_saves_requeues_and_the_requeued_job_continues_exactly(tiny_data, tmp_path):
    whole = uninterrupted(train_process, tiny_data, tmp_path / "whole")
    env, calls = stand_ins(tmp_path)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lsvr", "train", str(CONFIG), "--out", str(out),
               *sets(tiny_data, **{"slurm.requeue": "true", "checkpoint.every_steps": 100})]  # fmt: skip
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: logged_steps(out / "metrics.jsonl") >= 3, what="step 3 in metrics.jsonl")
    job.send_signal(signal.SIGUSR1)
    job.send_signal(signal.SIGUSR1)  # SLURM's signal and torchrun's forward of it: a repeat does not kill
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0, err[-3000:]
    assert "SIGUSR1: stopping after this step" in err and "checkpoint saved" in err
    assert f"SLURM job {JOB} requeued" in err
    assert calls.read_text().splitlines() == [f"requeue {JOB}"]
    assert checkpoints.load(checkpoints.find(out))["step"] >= 3
    again = subprocess.run([*command, "--resume", "auto"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert max_difference(whole, final_weights(out)) == 0.0


def test_requeue_asked_outside_slurm_warns_and_runs(tiny_data, tmp_path):
    result = train_process(tmp_path / "run", tiny_data, **{"slurm.requeue": "true", "train.epochs": 1})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "slurm.requeue=true outside a SLURM job (no SLURM_JOB_ID)" in result.stderr


def test_a_failing_scontrol_keeps_the_checkpoint_and_says_to_resubmit(tiny_data, tmp_path):
    env, _ = stand_ins(tmp_path)
    (tmp_path / "bin" / "scontrol").write_text("#!/bin/sh\necho 'Requested operation not supported' >&2\nexit 1\n")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lsvr", "train", str(CONFIG), "--out", str(out),
               *sets(tiny_data, **{"slurm.requeue": "true", "checkpoint.every_steps": 100})]  # fmt: skip
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: logged_steps(out / "metrics.jsonl") >= 3, what="step 3 in metrics.jsonl")
    job.send_signal(signal.SIGUSR1)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0 and "checkpoint saved" in err, err[-3000:]
    assert f"scontrol requeue {JOB} failed (Requested operation not supported); resubmit it" in err
    assert checkpoints.find(out) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sbatch(env: dict, out: Path, data: Path) -> subprocess.Popen:
    """The template as SLURM would run it on one node, two workers."""
    job_env = {**env, "LSVR_CONFIG": str(CONFIG), "LSVR_RUN": str(out), "LSVR_GPUS_PER_NODE": "2",
               "LSVR_PORT": str(free_port()), "LSVR_PYTHON": sys.executable}  # fmt: skip
    args = sets(data, **{"parallel.timeout_s": 30, "checkpoint.every_steps": 100})
    return subprocess.Popen(["bash", str(TEMPLATE), *args], env=job_env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_sbatch_template_at_world_2_requeues_on_sigusr1_to_torchrun(tiny_data, tmp_path):
    whole = uninterrupted(torchrun_train, tiny_data, tmp_path / "whole")
    env, calls = stand_ins(tmp_path)
    out = tmp_path / "run"
    job = sbatch(env, out, tiny_data)
    wait_for(lambda: logged_steps(out / "metrics.jsonl") >= 4, what="step 4 in metrics.jsonl")
    (torchrun,) = children(job.pid)  # srun's stand-in became torchrun: the task SLURM signals
    assert len(children(torchrun)) == 2  # its two workers
    os.kill(torchrun, signal.SIGUSR1)
    _, err = job.communicate(timeout=180)
    assert "checkpoint saved" in err and f"SLURM job {JOB} requeued" in err, err[-4000:]
    made = calls.read_text().splitlines()
    assert made[0] == "show hostnames localhost" and made.count(f"requeue {JOB}") == 1, made  # rank 0 alone
    assert checkpoints.load(checkpoints.find(out))["step"] >= 4
    requeued = sbatch(env, out, tiny_data)  # what SLURM starts again: the same script, the same job id
    _, err = requeued.communicate(timeout=300)
    assert requeued.returncode == 0, err[-3000:]
    assert "resumed from" in err
    assert max_difference(whole, final_weights(out)) == 0.0
