"""The training loop: step, validate, log, checkpoint.

lsvr train CONFIG [--set key=value ...] [--out RUN] [--resume auto|PATH]
torchrun --nproc-per-node N -m lsvr train CONFIG ...
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from lsvr.config import Config, to_dict
from lsvr.data.augment import Augment
from lsvr.data.loader import Loader
from lsvr.errors import InputError
from lsvr.evaluate import autocast, evaluate
from lsvr.models.registry import build_model
from lsvr.models.weights import load_matching, read_state_dict
from lsvr.preprocess import Preprocess
from lsvr.progress import progress_bar
from lsvr.train import checkpoint, parallel
from lsvr.train.faults import Faults
from lsvr.train.health import Health, nonfinite_hint
from lsvr.train.metrics import MetricsLog
from lsvr.train.optim import Schedule, build_optimizer
from lsvr.train.record import CheckpointRecord
from lsvr.train.run_folder import RunFolder, Start
from lsvr.train.setup import RunInputs, check_inputs
from lsvr.train.signals import Preemption
from lsvr.train.state import provenance, rng_state, set_rng_state


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf and guard.nonfinite says stop (or too many skips)."""


StepHook = Callable[[int, torch.nn.Module, "parallel.Distributed"], None]


def train(cfg: Config, *, out: Path, resume: str | None = None, command: str = "",
          on_step: StepHook | None = None) -> dict[str, Any]:  # fmt: skip
    """Run (or continue) training into the run folder `out`; returns a summary.
    on_step(step, model, env) is called after every step's update (and exchange), on every rank.
    Rank 0 holds the run folder's lock throughout (lsvr.train.run_folder)."""
    with RunFolder(out, main=int(os.environ.get("RANK", "0")) == 0, resuming=resume is not None) as folder:
        start = folder.start(resume)
        return _train(cfg, start, folder, command=command, on_step=on_step)


def _train(cfg: Config, start: Start, folder: RunFolder, *, command: str, on_step: StepHook | None) -> dict[str, Any]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    inputs = check_inputs(cfg, start=start, world=world)  # before the process group
    if inputs.done:  # every rank sees it before any group exists, and nothing is written
        step, where = start.state.step, start.resume_from if start.forked else folder.out
        if folder.main:
            print(f"lsvr train: {where} is already at step {step} ({inputs.done}): nothing to train", file=sys.stderr)
        return {"run": str(folder.out), "step": step, "done": True}
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    env = parallel.setup(cfg)
    try:
        with Preemption() as preemption:
            summary = _run(cfg, inputs, start, env, folder=folder, command=command, on_step=on_step,
                           preemption=preemption)  # fmt: skip
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


def _say(env: parallel.Distributed, text: str) -> None:
    if env.is_main:
        tqdm.write(text, file=sys.stderr)


def _run(cfg: Config, inputs: RunInputs, start: Start, env: parallel.Distributed, *, folder: RunFolder, command: str,
         on_step, preemption: Preemption) -> dict:  # fmt: skip
    ds, device, out = inputs.train, env.device, folder.out
    log = MetricsLog(out / "metrics.jsonl", enabled=env.is_main)
    faults = Faults.arm(cfg.debug, attempt=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    checkpointer = checkpoint.Checkpointer(out / "checkpoints", keep=cfg.checkpoint.keep, faults=faults)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    model = build_model(
        cfg.model.name,
        num_classes=len(ds.classes),
        in_channels=ds.shape[2],
        crop=inputs.crop,
        dropout=cfg.model.dropout,
        width=cfg.model.width,
    )
    if cfg.model.init_from and inputs.resume_from is None:
        fresh = load_matching(model, read_state_dict(Path(cfg.model.init_from)), source=cfg.model.init_from)
        note = f"; re-initialised: {', '.join(fresh)}" if fresh else ""
        _say(env, f"lsvr train: weights from {cfg.model.init_from}{note}")
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    optimizer = build_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")

    per_rank = cfg.train.global_batch // env.world
    common = {"rank": env.rank, "world": env.world, "workers": cfg.data.workers, "device": device,
              "decode": cfg.data.decode, "bad_records": cfg.data.bad_records,
              "warn": lambda text: _say(env, f"lsvr train: warning: {text}")}  # fmt: skip
    loader = Loader(
        ds, batch_size=per_rank, shuffle=True, seed=cfg.train.seed, indices=inputs.train_rows,
        prefetch=cfg.data.prefetch, crop=inputs.crop, flip=cfg.data.flip, **common,
    )  # fmt: skip
    val_loader = None
    if inputs.val is not None:
        val_loader = Loader(inputs.val, batch_size=per_rank, shuffle=False, indices=inputs.val_rows, **common)
    augment = Augment(
        mean_image=ds.mean_image, channel_mean=ds.channel_mean, channel_std=ds.channel_std, crop=inputs.crop,
        normalize=cfg.data.normalize, channels_last=cfg.train.channels_last, device=device,
    )  # fmt: skip
    total_steps = len(loader) * cfg.train.epochs
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    schedule = Schedule(cfg.optim, steps_per_epoch=len(loader), total_steps=total_steps,
                        global_batch=cfg.train.global_batch)  # fmt: skip

    step, epoch, start_step, best_top1, last_val, unvalidated = 0, 0, 0, None, None, False
    if inputs.resume_from is not None:
        saved = checkpoint.read(inputs.resume_from)  # on the CPU: load_state_dict moves each tensor
        try:
            model.load_state_dict(saved.model)
            optimizer.load_state_dict(saved.optimizer)
        except (RuntimeError, ValueError) as exc:
            message = str(exc).splitlines()[0]
            raise InputError(f"{inputs.resume_from}: does not fit this config's model ({message})") from None
        if saved.scaler:
            scaler.load_state_dict(saved.scaler)
        step, epoch, start_step = saved.step, saved.loader["epoch"], saved.loader["step"]
        # Saved on an epoch's last step before its validation ran (a stop in that step, or
        # a kill during the validation): validated first, below.
        unvalidated = start_step >= len(loader)
        saved_batch = saved.loader.get("global_batch", cfg.train.global_batch)
        if saved_batch != cfg.train.global_batch:  # the position counts global batches: they must agree
            raise InputError(f"{inputs.resume_from}: written with train.global_batch={saved_batch}; resume with it")
        if not start.forked:  # another run's scores (and data.val) are not this run's
            best_top1 = saved.best_top1
            last_val = (saved.metrics or None) if val_loader is not None else None
        set_rng_state(saved.rng)
        if saved.threads not in (None, torch.get_num_threads()):
            _say(env, f"lsvr train: warning: {saved.threads} threads wrote the checkpoint, {torch.get_num_threads()}"
                      " run now: the result will not be bitwise the same (set train.threads)")  # fmt: skip
        _say(env, f"lsvr train: resumed from {inputs.resume_from} at step {step} (epoch {epoch + 1})")
    if env.is_main:  # every check that can refuse the start has passed (the model's fit included)
        for left in checkpointer.clean():
            _say(env, f"lsvr train: removed {left.name}, left by an interrupted save")
        for line in [start.note, *inputs.notes]:
            if line:
                _say(env, line)
        folder.record_start(yaml.safe_dump(to_dict(cfg), sort_keys=False), lambda: log.write(
            "start", command=command, run_id=start.run_id, config=to_dict(cfg), world=env.world, device=str(device),
            threads=torch.get_num_threads(), host=platform.node(), cpus=os.cpu_count(),
            resume_from=str(inputs.resume_from) if inputs.resume_from else None, **provenance(),
        ))  # fmt: skip
        _say(env, f"lsvr train: run {out} ({start.run_id}), world {env.world}, device {device}, crop {inputs.crop}")
        _say(env, yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None).rstrip())
    net = parallel.wrap(model, env, cfg)
    if cfg.train.compile != "none":  # compiled at the first step; validation runs the bare model
        net = torch.compile(net, mode=cfg.train.compile)
    params = list(model.parameters())

    preprocess = Preprocess.from_dataset(ds, crop=inputs.crop, normalize=cfg.data.normalize)

    def save(position: dict[str, int], metrics: dict | None) -> None:
        nonlocal best_top1
        if not health.weights_finite(params):
            raise NonFiniteLossError(f"non-finite weights after step {step}; the last checkpoint is kept"
                                     + nonfinite_hint(cfg))  # fmt: skip
        top1 = metrics["top1"] if metrics else None
        if top1 is not None and (best_top1 is None or top1 > best_top1):
            best_top1 = top1
        if not env.is_main:
            return
        record = CheckpointRecord(
            model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler={"step": step},
            scaler=scaler.state_dict() if scaler.is_enabled() else {}, step=step, epoch=position["epoch"],
            loader=position, rng=rng_state(), config=to_dict(cfg), preprocess=preprocess, metrics=metrics or {},
            best_top1=best_top1, threads=torch.get_num_threads(), world=env.world, run_id=start.run_id,
            provenance=provenance(),
        )  # fmt: skip
        checkpointer.save(record, top1=top1)

    def position(at_epoch: int, at_step: int) -> dict[str, int]:
        """Where the loader stands, in global batches and in samples of the epoch's global
        order: the same at any world size, so a run resumes at another one."""
        batch = cfg.train.global_batch
        return {"epoch": at_epoch, "step": at_step, "sample": at_step * batch, "global_batch": batch}

    def validate() -> dict | None:
        if val_loader is None:
            return None
        # The bare model: replicas hold the same weights, and DDP's forward must not run
        # where ranks score different numbers of batches.
        result = evaluate(
            model, val_loader, augment, precision=cfg.train.precision, reduce=lambda t: parallel.all_sum(t, env)
        )
        log.write("val", step=step, epoch=epoch + 1, **result)
        _say(
            env,
            f"epoch {epoch + 1}: val top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%"
            f"  loss {result['loss']:.4f}",
        )
        return result

    health = Health(env, check_grads=cfg.train.precision != "fp16")  # fp16: its scaler skips inf steps
    skip_mode = cfg.guard.nonfinite == "skip"
    skips, stop = 0, False

    def settle(keep: int = 0) -> None:
        """Read the queued health flags (all but the newest `keep`); stop on a non-finite step."""
        nonlocal stop
        bad, asked = health.settle(keep=keep)
        stop = stop or asked
        if bad is not None:
            raise NonFiniteLossError(
                f"non-finite loss at step {bad}; the last checkpoint is kept" + nonfinite_hint(cfg)
            )

    if unvalidated:
        last_val = validate() or last_val
        epoch, start_step = epoch + 1, 0
        save(position(epoch, start_step), last_val)

    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    mark_time, mark_step = time.perf_counter(), step
    sec_per_20 = float("nan")
    show = env.is_main and cfg.train.progress
    shown: dict[str, str] = {}  # the last logging window's figures, carried onto the next epoch's bar
    while epoch < cfg.train.epochs and step < total_steps:
        bar = progress_bar(total=len(loader), initial=start_step, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                           enabled=show, unit="step", postfix=shown)  # fmt: skip
        epoch_start = time.perf_counter()
        for batch in loader.batches(epoch, start_step):
            lr = schedule.apply(optimizer, step)
            inputs_ = augment.train(batch)
            batch.release()  # the float copy is made: the loader may refill the uint8 buffer
            loss = _step(net, optimizer, scaler, inputs_, batch.labels, cfg)
            loss = faults.at_step(loss, rank=env.rank, step=step + 1)  # debug.fault: tests only
            grad_norm = health.exchange(step + 1, loss, params, preemption.requested is not None)
            if skip_mode:  # the update waits for this step's flags
                bad, asked = health.settle()
                stop = stop or asked
            else:  # the previous step's flags, read with this step queued behind them
                settle(keep=1)
                bad = None
            if bad is not None:  # a NaN or Inf loss or gradient on some rank: skipped on every rank
                skips += 1
                if skips > cfg.guard.max_skips:
                    raise NonFiniteLossError(
                        f"non-finite loss at step {bad}; the last checkpoint is kept" + nonfinite_hint(cfg)
                    )
                optimizer.zero_grad(set_to_none=True)
                _say(env, f"step {step + 1}: non-finite loss, update skipped ({skips} in a row)")
            else:
                skips = 0
                _apply(params, optimizer, scaler, cfg, grad_norm)
                if cfg.parallel.mode == "average" and (step + 1) % cfg.parallel.average_every == 0:
                    parallel.average_replicas(model, optimizer, env)
                loss_sum += loss.detach()
                loss_count += 1
            step += 1
            if on_step is not None:
                on_step(step, model, env)
            bar.update(1)
            if step % 20 == 0:
                now = time.perf_counter()
                sec_per_20 = (now - mark_time) * 20 / (step - mark_step)
                mark_time, mark_step = now, step
            log_now = step % cfg.train.log_every == 0 or step == total_steps
            save_now = bool(cfg.checkpoint.every_steps) and step % cfg.checkpoint.every_steps == 0
            if log_now or save_now or step >= total_steps:
                settle()  # nothing non-finite is logged or saved
            if log_now:
                mean = parallel.all_sum(loss_sum.clone(), env).item() / max(1, loss_count * env.world)
                ips = cfg.train.global_batch * (batch.step + 1 - start_step) / (time.perf_counter() - epoch_start)
                eta = (total_steps - step) * cfg.train.global_batch / ips  # the whole run, not just this epoch
                # s_20it needs 20 steps behind it: left out before, rather than shown as nan
                shown = {"loss": f"{mean:.4f}", "lr": f"{lr:.4g}", "img_s": f"{ips:.0f}",
                         **({} if math.isnan(sec_per_20) else {"s_20it": f"{sec_per_20:.2f}"}),
                         "run_eta": f"{eta / 60:.1f}min"}  # fmt: skip
                bar.set_postfix(**shown)
                log.write("train", step=step, epoch=epoch + 1, loss=mean, lr=lr, images_per_sec=round(ips, 1),
                          sec_per_20_iter=None if math.isnan(sec_per_20) else round(sec_per_20, 3),
                          **({"bad_records": len(loader.bad_rows)} if loader.bad_rows else {}))  # fmt: skip
                loss_sum.zero_()
                loss_count = 0
            if save_now and step < total_steps:
                save(position(epoch, batch.step + 1), last_val)
            if stop:
                break
            if step >= total_steps:
                break
        bar.close()
        settle()
        if stop:
            save(position(epoch, batch.step + 1), last_val)
            _say(env, f"lsvr train: stopped by {preemption.requested or 'a signal to another rank'} at step {step};"
                      " checkpoint saved; continue with --resume auto")  # fmt: skip
            return {"run": str(out), "step": step, "epoch": epoch, "val": last_val, "best_top1": best_top1,
                    "stopped": preemption.requested or "peer"}  # fmt: skip
        finished_epoch = batch.step + 1 == len(loader)
        seconds = time.perf_counter() - epoch_start
        images = cfg.train.global_batch * (batch.step + 1 - start_step)
        log.write("epoch", step=step, epoch=epoch + 1, seconds=round(seconds, 2),
                  images_per_sec=round(images / seconds, 1), complete=finished_epoch)  # fmt: skip
        last_val = validate() or last_val
        if finished_epoch:
            epoch, start_step = epoch + 1, 0
        else:
            start_step = batch.step + 1
        save(position(epoch, start_step), last_val)
    return {"run": str(out), "step": step, "epoch": epoch, "val": last_val, "best_top1": best_top1}


def _step(net, optimizer, scaler, images: torch.Tensor, labels: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Forward and backward over train.accumulate micro-batches; returns the mean loss."""
    optimizer.zero_grad(set_to_none=True)
    chunks = cfg.train.accumulate
    total = torch.zeros((), device=images.device)
    for i, (x, y) in enumerate(zip(images.chunk(chunks), labels.chunk(chunks), strict=True)):
        sync = i == chunks - 1 or not hasattr(net, "no_sync")
        with (
            contextlib.nullcontext() if sync else net.no_sync(),
            autocast(images.device, cfg.train.precision),
        ):
            loss = F.cross_entropy(net(x).float(), y, label_smoothing=cfg.train.label_smoothing)
        scaler.scale(loss / chunks).backward()
        total += loss.detach()
    return total / chunks


def _apply(params: list, optimizer, scaler, cfg: Config, grad_norm: torch.Tensor | None) -> None:
    """The update, clipped to guard.clip_norm with the norm the health check measured
    (fp16: after unscaling, so measured again)."""
    if cfg.guard.clip_norm:
        if grad_norm is None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.guard.clip_norm)
        else:
            torch.nn.utils.clip_grads_with_norm_(params, cfg.guard.clip_norm, grad_norm)
    scaler.step(optimizer)
    scaler.update()
