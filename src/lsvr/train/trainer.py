"""The training loop as one object: build, resume, train an epoch, validate, save.

`Trainer(...).run()` is what `lsvr train` runs once every input is checked and the process
group exists (lsvr.train.engine); its state between steps is a `RunState`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from lsvr.config import Config, to_dict
from lsvr.data.augment import Augment
from lsvr.data.loader import Batch
from lsvr.data.mix import Mix
from lsvr.errors import InputError
from lsvr.evaluate import evaluate, input_dtype
from lsvr.models.alexnet import PaperLRN
from lsvr.models.registry import build_model
from lsvr.models.weights import load_matching, read_state_dict
from lsvr.progress import progress_bar
from lsvr.runs.metrics import RESUME
from lsvr.runs.provenance import provenance
from lsvr.signals import Preemption
from lsvr.train import checkpoint, parallel, slurm
from lsvr.train.budget import TimeBudget, process_start, val_views
from lsvr.train.faults import Faults
from lsvr.train.health import Health, nonfinite_hint
from lsvr.train.observe import Observers
from lsvr.train.optim import Schedule, build_optimizer, check_schedule
from lsvr.train.parts import TrainingParts
from lsvr.train.resume import record_of, restore
from lsvr.train.run_folder import RunFolder, Start
from lsvr.train.setup import RunInputs, run_loaders, run_preprocess
from lsvr.train.state import RunState
from lsvr.train.step import apply_update, step_forward_backward
from lsvr.train.throughput import Throughput
from lsvr.train.whitening import whiten_first_conv


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf and guard.nonfinite says stop (or too many skips)."""


StepHook = Callable[[int, torch.nn.Module, "parallel.Distributed"], None]


class Trainer:
    """One run of the loop, on every rank; rank 0 alone prints and writes (through `folder`)."""

    def __init__(self, cfg: Config, inputs: RunInputs, start: Start, env: parallel.Distributed, *, folder: RunFolder,
                 command: str, on_step: StepHook | None, preemption: Preemption,
                 verbose: bool = False) -> None:  # fmt: skip
        self.cfg, self.inputs, self.start, self.env, self.folder = cfg, inputs, start, env, folder
        self.command, self.on_step, self.preemption = command, on_step, preemption
        self.verbose = verbose  # the resolved config on stderr too (lsvr train --verbose)
        self.log = folder.metrics_log()
        self.faults = Faults.arm(cfg.debug, attempt=env.restart)  # they strike the first attempt alone
        self.checkpointer = checkpoint.Checkpointer(folder.checkpoints, keep=cfg.checkpoint.keep, faults=self.faults)
        self.state = RunState(global_batch=cfg.train.global_batch)
        self.stop = False  # a preemption asked, here or on another rank
        self.skips = 0  # non-finite steps skipped in a row (guard.nonfinite=skip)
        self.shown: dict[str, str] = {}  # the last logging window's figures, carried onto the next epoch's bar
        self.started = process_start()  # train.time_budget_s and time to accuracy count from it
        self.res = 0  # the side of the last batch trained on (progressive resizing: data.res_*)
        self.observers = Observers(cfg, folder.out, env.device, main=env.is_main, encoding=inputs.train.encoding,
                                   say=self.say)  # fmt: skip

    def say(self, text: str) -> None:
        if self.env.is_main:
            tqdm.write(text, file=sys.stderr)

    def run(self) -> dict[str, Any]:
        """Build, resume, record the start, then train to the end (or a stop); the summary."""
        self.build()
        self.resume()
        self.arm_budget()
        self.record_start()
        self.parallelize()
        self.observers.start(self.state.step)
        try:
            return self.fit()
        finally:
            self.observers.close(self.log)
            for loader in (self.loader, self.val_loader):
                if loader is not None:
                    loader.close()  # its threads and its read-ahead into an epoch that does not come

    def build(self) -> None:
        """The model (from model.init_from on a fresh start), optimizer, scaler, loaders, augment, schedule."""
        cfg, ds, device = self.cfg, self.inputs.train, self.env.device
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        PaperLRN.FUSED = cfg.train.fused_lrn  # on CUDA; the CPU keeps torch's op
        model = build_model(cfg.model.name, num_classes=len(ds.classes), in_channels=ds.shape[2],
                            crop=self.inputs.crop, dropout=cfg.model.dropout, width=cfg.model.width,
                            zero_init_residual=cfg.model.zero_init_residual, blurpool=cfg.model.blurpool)  # fmt: skip
        if cfg.model.init_from and self.inputs.resume_from is None:
            fresh = load_matching(model, read_state_dict(Path(cfg.model.init_from)), source=cfg.model.init_from)
            note = f"; re-initialised: {', '.join(fresh)}" if fresh else ""
            self.say(f"lsvr train: weights from {cfg.model.init_from}{note}")
        memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=memory_format)
        self.augment = Augment(
            mean_image=ds.mean_image, channel_mean=ds.channel_mean, channel_std=ds.channel_std, crop=self.inputs.crop,
            normalize=cfg.data.normalize, channels_last=cfg.train.channels_last, device=device,
            dtype=input_dtype(device, cfg.train.precision),
        )  # fmt: skip
        if cfg.model.whiten:  # frozen before the optimizer takes the trainable parameters
            self.say(whiten_first_conv(model, self.inputs, self.augment, seed=cfg.train.seed))
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")
        self.preprocess = run_preprocess(cfg, ds, crop=self.inputs.crop)
        self.loader, self.val_loader = run_loaders(
            cfg, self.inputs, self.preprocess, env=self.env, warn=lambda text: self.say(f"lsvr train: warning: {text}")
        )
        self.mix = Mix(mixup=cfg.data.mixup, cutmix=cfg.data.cutmix, switch=cfg.data.mix_switch, seed=cfg.train.seed,
                       num_classes=len(ds.classes), global_batch=cfg.train.global_batch)  # fmt: skip
        self.total_steps = len(self.loader) * cfg.train.epochs
        if cfg.train.max_steps:
            self.total_steps = min(self.total_steps, cfg.train.max_steps)
        self.cap_steps = self.total_steps  # the most a time budget may fix
        self.schedule = Schedule(cfg.optim, steps_per_epoch=len(self.loader), total_steps=self.total_steps,
                                 global_batch=cfg.train.global_batch)  # fmt: skip
        self.health = Health(self.env, check_grads=cfg.train.precision != "fp16")  # fp16: its scaler skips inf steps
        self.params = list(model.parameters())
        self.loss_sum, self.loss_count = torch.zeros((), device=device), 0  # the logging window's losses
        self.parts = TrainingParts.of(self.model, optimizer=self.optimizer, scaler=self.scaler, state=self.state,
                                      train=cfg.train)  # fmt: skip
        self.ema, self.lookahead = self.parts.ema, self.parts.lookahead  # None where the config has none

    def resume(self) -> None:
        """Continue from inputs.resume_from (if any): each part loads its entries (lsvr.train.resume)."""
        if where := self.inputs.resume_from:
            restore(self.parts, where, forked=self.start.forked, validates=self.val_loader is not None, say=self.say)

    def arm_budget(self) -> None:
        """train.time_budget_s: a checkpoint's totals are kept, this process times what is left
        (both plans, the second, or none); refused where spent before the first step."""
        self.budget, seconds, s = None, self.cfg.train.time_budget_s, self.state
        if not seconds:
            s.budget_steps = s.budget_replan = None
            return
        if s.budget_steps:
            self.set_total(s.budget_steps)
        if s.budget_replan is not None:
            return
        val_images = len(self.val_loader.indices) if self.val_loader is not None else 0
        ramp, spe = self.loader.resolution, len(self.loader)
        self.budget = TimeBudget(seconds, started=self.started, env=self.env, val_images=val_images,
                                 global_batch=self.cfg.train.global_batch, steps_per_epoch=spe,
                                 cap=self.cap_steps, side_at=(lambda i: ramp.at(i / spe)) if ramp else None,
                                 val_side=self.preprocess.eval_crop or 0, val_from=self.cfg.train.val_from,
                                 val_views=val_views(self.preprocess), fixed=s.budget_steps)  # fmt: skip
        if not s.budget_steps:
            self.budget.check_start()

    def set_total(self, total: int, *, replan_at: int | None = None) -> None:
        """The run's total steps (at most epochs' and max_steps'), where the schedule ends;
        replan_at: the step a second plan replaced the first's total (the tail stretched)."""
        if replan_at is not None:
            self.state.budget_replan = [replan_at, self.total_steps]
        self.total_steps = self.state.budget_steps = min(total, self.cap_steps)
        replan = tuple(self.state.budget_replan) if self.state.budget_replan else None
        self.schedule = Schedule(self.cfg.optim, steps_per_epoch=len(self.loader), total_steps=self.total_steps,
                                 global_batch=self.cfg.train.global_batch, replan=replan,
                                 planned_steps=self.cap_steps)  # fmt: skip
        if note := self.schedule.budget_note():
            self.say(note)
        try:  # warm-up and peak are fixed in optim.unit: a short budget can end before them
            check_schedule(self.cfg.optim, steps_per_epoch=len(self.loader), run_steps=self.total_steps)
        except InputError as exc:
            self.say(f"lsvr train: warning: the budget's {self.total_steps} steps: {exc}".replace("config: ", ""))

    def record_start(self) -> None:
        """Rank 0, once every check that can refuse the start has passed (the model's fit included):
        clear a killed save's leftovers, write config.yaml and the `start` record, say the run."""
        if not self.env.is_main:
            return
        cfg, env, start, out, crop = self.cfg, self.env, self.start, self.folder.out, self.inputs.crop
        for left in self.folder.clean_leftovers():
            self.say(f"lsvr train: removed {left.name}, left by an interrupted save")
        for line in [start.note, *self.inputs.notes]:
            if line:
                self.say(line)
        resume_from = self.inputs.resume_from
        continued = not start.forked and start.run_id == self.folder.run_id()  # this run's records: an attempt before
        self.folder.record_start(yaml.safe_dump(to_dict(cfg), sort_keys=False), lambda: self.log.write(
            "start", command=self.command, run_id=start.run_id, config=to_dict(cfg), world=env.world,
            device=str(env.device), threads=torch.get_num_threads(), workers=self.loader.workers, host=platform.node(),
            cpus=os.cpu_count(), resume_from=str(resume_from) if resume_from else None,
            process_start=round(self.started, 3), **provenance(),
        ))  # fmt: skip
        if continued:  # what an earlier attempt logged past this step is superseded (read_metrics drops it)
            self.log.write(RESUME, step=self.state.step)
        # one line (the config is in RUN/config.yaml; ~50 lines of it before the first step were noise)
        steps = f"steps {self.state.step}->{self.total_steps}" if self.state.step else f"{self.total_steps} steps"
        self.say(f"lsvr train: run {out} ({start.run_id}): {cfg.model.name} on {cfg.data.train}"
                 f" ({len(self.inputs.train_rows)} images, {len(self.inputs.train.classes)} classes, crop {crop}),"
                 f" {steps}, device {env.device}, world {env.world}, compute threads {torch.get_num_threads()},"
                 f" reading threads {self.loader.workers}; config: {out / 'config.yaml'}")  # fmt: skip
        if self.verbose:
            self.say(yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None).rstrip())

    def parallelize(self) -> None:
        """The net the steps run: DDP-wrapped where asked, compiled where asked."""
        self.net = parallel.wrap(self.model, self.env, self.cfg)
        if self.cfg.train.compile != "none":  # compiled at the first step; validation runs the bare model
            self.net = torch.compile(self.net, mode=self.cfg.train.compile)

    def fit(self) -> dict[str, Any]:
        """Epochs until train.epochs or train.max_steps; a pending validation first."""
        s, epochs = self.state, self.cfg.train.epochs
        if s.batch >= len(self.loader):
            # Saved on an epoch's last step before its validation ran (a stop in that step, or
            # a kill during the validation): validated first.
            s.last_val = self.validate() or s.last_val
            s.epoch, s.batch = s.epoch + 1, 0
            self.save()
        self.meter = Throughput(self.cfg.train.global_batch, step=s.step)
        summary = {"run": str(self.folder.out)}
        while s.epoch < epochs and s.step < self.total_steps:
            if self.train_epoch():
                stopped = self.preemption.requested or "peer"
                return {**summary, "step": s.step, "epoch": s.epoch, "val": s.last_val, "best_top1": s.best_top1,
                        "stopped": stopped}  # fmt: skip
        return {**summary, "step": s.step, "epoch": s.epoch, "val": s.last_val, "best_top1": s.best_top1}

    def train_epoch(self) -> bool:
        """The rest of the epoch in progress, then its validation and save; True where a stop was
        asked (saved where it stopped, and said)."""
        s, train = self.state, self.cfg.train
        every = self.cfg.checkpoint.every_steps
        bar = progress_bar(total=len(self.loader), initial=s.batch, desc=f"epoch {s.epoch + 1}/{train.epochs}",
                           enabled=self.env.is_main and train.progress, unit="step", postfix=self.shown)  # fmt: skip
        self.meter.start_epoch(s.batch, s.step)
        for batch in self.meter.timed(self.loader.batches(s.epoch, s.batch)):
            lr = self.train_step(batch)
            self.observers.after_step()
            bar.update(1)
            self.meter.tick(s.step)
            log_now = s.step % train.log_every == 0 or s.step == self.total_steps
            save_now = bool(every) and s.step % every == 0
            if log_now or save_now or s.step >= self.total_steps:
                self._settle()  # nothing non-finite is logged or saved
            if log_now:
                self.log_window(lr, bar)
            if save_now and s.step < self.total_steps:
                began = time.perf_counter()
                self.save()
                self.meter.pause(time.perf_counter() - began)
            if self.stop or s.step >= self.total_steps:
                break
        bar.close()
        self._settle()
        if self.stop:
            self.save()
            self.say(f"lsvr train: stopped by {self.preemption.requested or 'a signal to another rank'} at step"
                     f" {s.step}; checkpoint saved; continue with --resume auto")  # fmt: skip
            if self.cfg.slurm.requeue and self.env.is_main and slurm.job_id():
                self.preemption.requeued = slurm.requeue(self.say)
            return True
        finished = s.batch == len(self.loader)
        seconds, ips = self.meter.since_epoch_start(s.batch)
        self.log.write("epoch", step=s.step, epoch=s.epoch + 1, seconds=round(seconds, 2),
                       images_per_sec=round(ips, 1), complete=finished)  # fmt: skip
        s.last_val = self.validate() or s.last_val
        if finished:
            s.epoch, s.batch = s.epoch + 1, 0
        self.save()
        return False

    def train_step(self, batch: Batch) -> float:
        """One update on one global batch (this rank's share); returns its learning rate."""
        cfg, s = self.cfg, self.state
        lr = self.schedule.apply(self.optimizer, s.step)
        images = self.augment.train(batch)
        batch.release()  # the float copy is made: the loader may refill the uint8 buffer
        images, targets = self.mix(images, batch.labels, epoch=s.epoch, step=batch.step)  # as they are when off
        if self.res and batch.draws.crop != self.res:  # progressive resizing: each change said once
            self.say(f"lsvr train: step {s.step + 1}: training resolution {self.res} -> {batch.draws.crop} px")
        self.res = batch.draws.crop
        loss = step_forward_backward(self.net, self.optimizer, self.scaler, images, targets, cfg.train)
        loss = self.faults.at_step(loss, rank=self.env.rank, step=s.step + 1)
        grad_norm = self.health.exchange(s.step + 1, loss, self.params, self.preemption.requested is not None)
        if cfg.guard.nonfinite == "skip":  # the update waits for this step's flags
            bad, asked = self.health.settle()
            self.stop = self.stop or asked
        else:  # the previous step's flags, read with this step queued behind them
            self._settle(keep=1)
            bad = None
        if bad is not None:  # a NaN or Inf loss or gradient on some rank: skipped on every rank
            self.skips += 1
            if self.skips > cfg.guard.max_skips:
                raise self._nonfinite(f"non-finite loss at step {bad}")
            self.optimizer.zero_grad(set_to_none=True)
            self.say(f"step {s.step + 1}: non-finite loss, update skipped ({self.skips} in a row)")
        else:
            self.skips = 0
            apply_update(self.params, self.optimizer, self.scaler, cfg.guard, grad_norm)
            if cfg.parallel.mode == "average" and (s.step + 1) % cfg.parallel.average_every == 0:
                parallel.average_replicas(self.model, self.optimizer, self.env)
                if self.ema is not None and cfg.parallel.average_every > 1:  # averages apart since the last
                    self.ema.average_over(self.env)
            if self.lookahead is not None:  # after the average too: every replica holds the same weights
                self.lookahead.after_update(s.step + 1)
            if self.ema is not None:  # after the average: every replica averages the same weights
                self.ema.update()
            self.loss_sum += loss.detach()
            self.loss_count += 1
        s.step, s.batch = s.step + 1, batch.step + 1
        if self.budget is not None and (total := self.budget.after_step(s.step, log=self.log, say=self.say)):
            self.set_total(total, replan_at=s.step if s.budget_steps else None)  # the second plan: a replan
        if self.on_step is not None:
            self.on_step(s.step, self.model, self.env)
        return lr

    def _settle(self, keep: int = 0) -> None:
        """Read the queued health flags (all but the newest `keep`); stop on a non-finite step."""
        bad, asked = self.health.settle(keep=keep)
        self.stop = self.stop or asked
        if bad is not None:
            raise self._nonfinite(f"non-finite loss at step {bad}")

    def _nonfinite(self, found: str) -> NonFiniteLossError:
        """The stop on a NaN or Inf: what was found, what is kept, what to change."""
        kept = "the last checkpoint is kept" if self.checkpointer.latest() else "no checkpoint was saved before it"
        return NonFiniteLossError(f"{found}; {kept}" + nonfinite_hint(self.cfg))

    def log_window(self, lr: float, bar: Any) -> None:
        """The `train` record and the bar's figures: the window's mean loss over every rank, the speed."""
        s, world = self.state, self.env.world
        mean = parallel.all_sum(self.loss_sum.clone(), self.env).item() / max(1, self.loss_count * world)
        ips = self.meter.since_epoch_start(s.batch)[1]
        eta = self.meter.eta_s(self.total_steps - s.step, ips)  # the whole run, not just this epoch
        sec_20 = self.meter.sec_per_20
        window = self.meter.window(s.step)
        res = {"res": self.res} if self.loader.resolution else {}  # progressive resizing: the side trained at
        # s_20it needs 20 steps behind it: left out before, rather than shown as nan
        self.shown = {"loss": f"{mean:.4f}", "lr": f"{lr:.4g}", **{k: str(v) for k, v in res.items()},
                      "img_s": f"{ips:.0f}", "compute_img_s": f"{window.compute_images_per_sec:.0f}",
                      "data_wait": f"{100 * window.data_wait:.0f}%",
                      **({} if sec_20 is None else {"s_20it": f"{sec_20:.2f}"}),
                      "run_eta": f"{eta / 60:.1f}min"}  # fmt: skip
        bar.set_postfix(**self.shown)
        bad = {"bad_records": len(self.loader.bad_rows)} if self.loader.bad_rows else {}
        memory = self.observers.memory_mb()
        self.log.write("train", step=s.step, epoch=s.epoch + 1, loss=mean, lr=lr, images_per_sec=round(ips, 1),
                       compute_images_per_sec=round(window.compute_images_per_sec, 1),
                       data_wait=round(window.data_wait, 4), memory_mb=round(memory, 1),
                       sec_per_20_iter=None if sec_20 is None else round(sec_20, 3), **res, **bad)  # fmt: skip
        self.observers.train_window(s.step, {"loss": mean, "lr": lr, "images_per_sec": ips, "memory_mb": memory,
                                             "compute_images_per_sec": window.compute_images_per_sec,
                                             "data_wait": window.data_wait}, window)  # fmt: skip
        self.loss_sum.zero_()
        self.loss_count = 0

    def validate(self) -> dict | None:
        """Score the validation set (if any) on every rank, from epoch train.val_from on and at the
        run's end; logged and said by rank 0."""
        s, train = self.state, self.cfg.train
        last = s.epoch + 1 >= train.epochs or s.step >= self.total_steps
        if self.val_loader is None or (s.epoch + 1 < train.val_from and not last):
            return None
        # The bare model: replicas hold the same weights, and DDP's forward must not run
        # where ranks score different numbers of batches.
        scored = self.ema.module if self.ema is not None and self.cfg.train.ema_eval else self.model
        pre = self.preprocess
        result = evaluate(scored, self.val_loader, self.augment, precision=self.cfg.train.precision, flip=pre.eval_flip,
                          shift=pre.eval_shift, reduce=lambda t: parallel.all_sum(t, self.env))  # fmt: skip
        epoch = self.state.epoch + 1
        self.log.write("val", step=self.state.step, epoch=epoch, **result)
        self.observers.val(self.state.step, result)
        self.say(f"epoch {epoch}: val top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%"
                 f"  loss {result['loss']:.4f}")  # fmt: skip
        return result

    def save(self) -> None:
        """A checkpoint at the state's position (rank 0 writes it); refused for non-finite weights."""
        s = self.state
        if not self.health.weights_finite(self.params):
            raise self._nonfinite(f"non-finite weights after step {s.step}")
        top1 = s.last_val["top1"] if s.last_val else None
        if top1 is not None and (s.best_top1 is None or top1 > s.best_top1):
            s.best_top1 = top1
        if not self.env.is_main:
            return
        self.checkpointer.save(record_of(self.parts, cfg=self.cfg, preprocess=self.preprocess, world=self.env.world,
                                         run_id=self.start.run_id), top1=top1)  # fmt: skip
