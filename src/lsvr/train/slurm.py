"""SLURM (slurm.requeue=true): a run stopped by SLURM's warning signal (SIGUSR1 from
`#SBATCH --signal=USR1@120`) or SIGTERM saves, puts its job back in the queue with
`scontrol requeue $SLURM_JOB_ID` (rank 0 alone) and exits 0; the requeued job's
`--resume auto` continues from the checkpoint. scripts/slurm/train.sbatch is the template.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable


def job_id() -> str | None:
    """SLURM's job id where this process runs in a SLURM job."""
    return os.environ.get("SLURM_JOB_ID") or None


def outside_note() -> str:
    """What `lsvr train` says when slurm.requeue=true is set outside SLURM: a warning, not a
    refusal, so that one config runs both in the job and on a workstation."""
    return ("lsvr train: warning: slurm.requeue=true outside a SLURM job (no SLURM_JOB_ID): a stop saves and"
            " exits, nothing is requeued")  # fmt: skip


def requeue(say: Callable[[str], None]) -> bool:
    """`scontrol requeue JOB`; True where scontrol took it, else one line on why not."""
    job = job_id()
    command = ["scontrol", "requeue", job or ""]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"lsvr train: warning: could not requeue SLURM job {job} ({exc}); resubmit it with --resume auto")
        return False
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        say(f"lsvr train: warning: scontrol requeue {job} failed ({why[0]}); resubmit it with --resume auto")
        return False
    say(f"lsvr train: SLURM job {job} requeued; it continues from this checkpoint with --resume auto")
    return True
