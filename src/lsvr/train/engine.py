"""The entry of a training run: the run folder, the input checks, the process group, then the Trainer.

lsvr train CONFIG [--set key=value ...] [--out RUN] [--resume auto|PATH]
torchrun --nproc-per-node N -m lsvr train CONFIG ...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from lsvr.config import Config
from lsvr.signals import Preemption, check_start_up
from lsvr.train import parallel
from lsvr.train.cpus import choose_threads
from lsvr.train.run_folder import RunFolder, Start
from lsvr.train.setup import check_inputs
from lsvr.train.trainer import NonFiniteLossError, StepHook, Trainer

__all__ = ["NonFiniteLossError", "StepHook", "train"]


def train(cfg: Config, *, out: Path, resume: str | None = None, command: str = "",
          on_step: StepHook | None = None, verbose: bool = False,
          allow_changes: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run (or continue) training into the run folder `out`; returns a summary.
    on_step(step, model, env) is called after every step's update (and exchange), on every rank.
    verbose: the resolved config on stderr too, under the run's one line (it is in RUN/config.yaml).
    allow_changes: a resume may change the run's arithmetic (lsvr.train.changes; --allow-changes).
    Rank 0 holds the run folder's lock throughout (lsvr.train.run_folder)."""
    with RunFolder(out, main=parallel.launch_env().is_main, resuming=resume is not None) as folder:
        start = folder.start(resume)
        return _train(
            cfg, start, folder, command=command, on_step=on_step, verbose=verbose, allow_changes=allow_changes
        )


def _train(cfg: Config, start: Start, folder: RunFolder, *, command: str, on_step: StepHook | None,
           verbose: bool, allow_changes: bool = False) -> dict[str, Any]:  # fmt: skip
    check_start_up()  # the run folder is locked, nothing written: a SIGTERM noted so far ends it here
    inputs = check_inputs(
        cfg,
        start=start,
        world=parallel.launch_env().world,  # before the process group
        allow_changes=allow_changes,
    )
    check_start_up()
    if inputs.done:  # every rank sees it before any group exists, and nothing is written
        step, where = start.state.step, start.resume_from if start.forked else folder.out
        if folder.main:
            print(f"lsvr train: {where} is already at step {step} ({inputs.done}): nothing to train", file=sys.stderr)
        return {"run": str(folder.out), "step": step, "done": True}
    threads, _ = choose_threads(cfg.train.threads, saved=start.state.threads if start.state else None)
    if threads:  # None: torch's own count (OMP_NUM_THREADS set)
        torch.set_num_threads(threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    env = parallel.setup(cfg)
    try:
        with Preemption() as preemption:  # takes over from the start-up's handler: a signal noted before ends it
            trainer = Trainer(cfg, inputs, start, env, folder=folder, command=command, on_step=on_step,
                              preemption=preemption, verbose=verbose)  # fmt: skip
            summary = trainer.run()
        parallel.barrier(env)  # every rank done (rank 0's last save included) before the group goes
        return summary
    except RuntimeError as exc:
        if env.world > 1 and parallel.peer_failure(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise parallel.PeerError(
                f"rank {env.rank}: a peer process died or stopped answering (parallel.timeout_s"
                f"={cfg.parallel.timeout_s}): {first}"
            ) from None
        raise
    finally:
        parallel.teardown()
