"""`lsvr train`: its flags, the config and overrides they name, and the run's exit status.

lsvr train CONFIG [--set key=value [key=value ...]] [--out RUN] [--resume auto|PATH [--allow-changes]]
           [--profile STEPS] [--keys] [-v]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from lsvr.cli_args import positive_int
from lsvr.errors import InputError


def add_train_command(sub: Any) -> None:
    """`lsvr train` and its flags (cli_train)."""
    p = sub.add_parser("train", help="train a model from a config")
    p.add_argument("config", nargs="?", help="YAML preset, e.g. configs/fashion_mnist.yaml")
    p.add_argument("--set", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys: --set a.b=1 c.d=2, or the flag repeated")  # fmt: skip
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", help="auto (the run folder's latest checkpoint) or a checkpoint/run path")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue with settings that change the run's arithmetic (optim.lr, ...)"
                        " where they differ from the checkpoint's; each change is said either way")  # fmt: skip
    p.add_argument("--keys", action="store_true", help="list every config key with its default and exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print the resolved config at the start (it is always in RUN/config.yaml)")  # fmt: skip
    p.add_argument(
        "--profile",
        type=positive_int,
        metavar="STEPS",
        help="record STEPS steady-state steps with torch.profiler into RUN/profile (train.profile_steps)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """`lsvr train`; under torchrun a refusal is said by rank 0 (and by the first process of
    each other node: its files may differ), not once per process: the others wait for torchrun
    to stop them (launch.wait_for_stop), saying it themselves only where rank 0 went on."""
    try:
        return _train(args)
    except InputError as exc:
        from lsvr.train.launch import launch_env, wait_for_stop

        launch = launch_env()
        if launch.is_main:
            raise
        if launch.local_rank != 0:
            wait_for_stop()
        raise InputError(f"rank {launch.rank}: {exc}") from None


def _train(args: argparse.Namespace) -> int:
    from lsvr.config_file import describe_keys, load_config
    from lsvr.folders import check_writable
    from lsvr.train.cpus import quiet_openmp_waits

    quiet_openmp_waits()  # before torch is imported (OpenMP reads it when loaded): OMP_WAIT_POLICY=PASSIVE unless set

    if args.keys:
        print(describe_keys())
        return 0
    config, overrides = train_config_args(args)
    if config is None:
        raise InputError("train: a CONFIG file is needed (see configs/)")
    if args.profile is not None:
        overrides.append(f"train.profile_steps={args.profile}")
    cfg = load_config(config, overrides)
    if cfg.train.tensorboard:
        from lsvr.train.board import require_tensorboard

        require_tensorboard()
    out = Path(args.out or Path("runs") / Path(config).stem)
    check_writable(out, what="run folder")  # before the heavy imports and any data is read

    from lsvr.runs import checkpoints
    from lsvr.signals import check_start_up
    from lsvr.train import checkpoint, slurm
    from lsvr.train.engine import NonFiniteLossError, train
    from lsvr.train.launch import launch_env, wait_for_stop
    from lsvr.train.metrics import WriteError
    from lsvr.train.parallel import PeerError

    check_start_up()  # a SIGTERM during the imports above (torch's): nothing to save

    resume = args.resume
    if args.allow_changes and resume is None:
        raise InputError("--allow-changes: applies to a resume only (--resume auto|PATH)")
    if resume is not None and Path(resume).suffix == ".safetensors":
        raise InputError(
            f"{resume}: an export holds weights only and cannot be resumed from; resume from the run's"
            " checkpoint (RUN or RUN/checkpoints/step-NNNNNNNN.pt), or start from its weights with"
            f" --set model.init_from={resume}"
        )
    launch = launch_env()
    if cfg.slurm.requeue and not slurm.job_id() and launch.is_main:
        print(slurm.outside_note(), file=sys.stderr)
    if resume is None and launch.restart > 0:
        resume = "auto"  # a worker restarted by torchrun continues from its run folder
    try:
        summary = train(cfg, out=out, resume=resume, command=shlex.join(["lsvr", *sys.argv[1:]]),
                        verbose=args.verbose, allow_changes=args.allow_changes)  # fmt: skip
    except NonFiniteLossError as exc:
        if not launch.is_main:  # every rank stops at the same step (the health flags are summed over ranks)
            wait_for_stop()
        print(f"lsvr train: stopped: {'' if launch.is_main else f'rank {launch.rank}: '}{exc}", file=sys.stderr)
        return 1
    except PeerError as exc:
        print(f"lsvr train: {exc}", file=sys.stderr)
        return 1
    except (checkpoint.SaveError, WriteError) as exc:
        latest = checkpoints.find(out)
        kept = f"the previous checkpoint {latest} is intact" if latest else "no earlier checkpoint"
        print(f"lsvr train: stopped: {exc}; {kept}", file=sys.stderr)
        return 1
    if summary.get("stopped") or summary.get("done"):
        return 0  # preempted, or nothing left to train: the run said so on stderr
    if launch.is_main:
        val = summary["val"]
        if val:
            print(f"val top-1 {val['top1']:.2f}%  top-5 {val['top5']:.2f}%  ({val['images']} images)")
        print(f"run: {summary['run']}  (step {summary['step']})")
    return 0


def train_config_args(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """CONFIG and the KEY=VALUE items of every --set, in order (`--set a=1 b=2` and
    `--set a=1 --set b=2` alike). A --set takes every item up to the next flag, so in
    `lsvr train --set a=1 CONFIG` (which parsed when --set took one item) the path ends the
    items: an item without `=` after at least one KEY=VALUE is CONFIG when none came before."""
    config, overrides = args.config, []
    for items in args.set:
        if config is None and len(items) > 1 and "=" not in items[-1]:
            config, items = items[-1], items[:-1]
        overrides += items
    stray = next((item for item in overrides if "=" not in item), None)
    if stray is not None and config is not None:  # a second path: say which one is taken as CONFIG
        raise InputError(f"--set {stray!r}: expected section.key=value (CONFIG is {config}; one config only)")
    return config, overrides
