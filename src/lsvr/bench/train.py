"""`lsvr bench train`: the training step alone, with lsvr's data path, and with a
torchvision-style data path, for the same model and batch, in one run.

- model_only: the step on one batch resident on the device (what the hardware allows);
- end_to_end: lsvr's Loader (reading the prepared set from disk every epoch, crops cut in
  its threads, or with --decode device, JPEGs decoded and cut on the GPU) + Augment (mirror,
  mean subtraction, on the device) + the step;
- baseline: torch's DataLoader over a per-sample Dataset that decodes the original JPEG
  with PIL, RandomResizedCrop + flip, to a float tensor normalised per channel.
The paper's unit is seconds per 20 iterations of 256 images: `seconds_per_5120_images`.
Each pipeline runs `steps` steps in each of `rounds` interleaved rounds; medians are reported.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import time
from statistics import median

import torch
import torch.nn.functional as F

from lsvr.bench.loader import PilCrops, photo_set, prepared
from lsvr.bench.timing import cpu_seconds, environment, workdir
from lsvr.config import OptimConfig
from lsvr.data.augment import Augment
from lsvr.data.loader import Loader
from lsvr.device import pick_device
from lsvr.evaluate import autocast, input_dtype
from lsvr.models.registry import build_model, model_spec
from lsvr.train.optim import build_optimizer
from lsvr.train.profile import WARMUP, StepProfiler


class Stepper:
    """One model, optimizer and precision; `step(images, labels)` is one training step."""

    def __init__(self, name: str, crop: int, device: torch.device, precision: str, compile_: str) -> None:
        torch.manual_seed(0)
        self.device, self.precision = device, precision
        self.model = build_model(name, num_classes=1000, in_channels=3, crop=crop)
        self.model.to(device, memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, OptimConfig(lr=0.001))
        self.net = self.model if compile_ == "none" else torch.compile(self.model, mode=compile_)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = F.cross_entropy(self.net(images).float(), labels)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, run) -> tuple[int, float]:
    _sync(device)
    start = time.perf_counter()
    images = run()
    _sync(device)
    return images, time.perf_counter() - start


def bench_train(*, model: str, batch: int, steps: int, workers: int | None, device_name: str, precision: str,
                compile_: str, folder: str | None, as_json: bool, images: int = 2000, encoding: str = "raw",
                decode: str = "host", rounds: int = 3, profile: bool = False,
                baseline: bool = True) -> dict:  # fmt: skip
    device = pick_device(device_name, setting="--device")
    if device.type == "cuda":  # as lsvr train does (train.cudnn_benchmark)
        torch.backends.cudnn.benchmark = True
    workers = workers or os.cpu_count() or 1
    crop = model_spec(model).default_crop
    root = workdir(folder)
    source = photo_set(root, max(images, batch * 2), workers)
    data = prepared(source, root / f"prepared-{len(source)}-{encoding}", encoding, workers)
    stepper = Stepper(model, crop, device, precision, compile_)
    # every pipeline warms up first: allocations, cuDNN's choices, a compile
    fixed = torch.randn(batch, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    fixed_labels = torch.randint(0, 1000, (batch,), device=device)
    for _ in range(2):
        stepper.step(fixed, fixed_labels)

    augment = Augment(mean_image=data.mean_image, channel_mean=data.channel_mean, channel_std=data.channel_std,
                      crop=crop, channels_last=True, device=device, dtype=input_dtype(device, precision))  # fmt: skip
    loader = Loader(data, batch_size=batch, shuffle=True, seed=0, workers=workers, prefetch=2 * workers,
                    device=device, crop=crop, decode=decode)  # fmt: skip
    pil = PilCrops([source.root / n for n in source.names], source.labels, crop=crop)
    torch_loader = torch.utils.data.DataLoader(pil, batch_size=batch, shuffle=True, num_workers=workers,
                                               drop_last=True, pin_memory=device.type == "cuda")  # fmt: skip
    mean = torch.tensor(data.channel_mean, device=device).view(1, 3, 1, 1)
    inv_std = 1 / torch.tensor(data.channel_std, device=device).view(1, 3, 1, 1)
    position = [0, 0]  # the loader's, carried from round to round
    pipelines = {
        "model_only": lambda: _model_only(stepper, fixed, fixed_labels, steps),
        "end_to_end": lambda: _end_to_end(stepper, loader, augment, steps, position) * batch,
        "baseline": lambda: _baseline(stepper, torch_loader, (mean, inv_std), steps) * batch,
    }
    if not baseline:  # --no-baseline: timed once, in another call
        del pipelines["baseline"]
    rounds_of, per_cpu = _interleaved(pipelines, device, rounds)
    per_sec = {name: median(values) for name, values in rounds_of.items()}

    def ratio(a: str, b: str, of: dict = rounds_of) -> float:  # the median of the rounds' ratios: each
        return round(median(x / y for x, y in zip(of[a], of[b], strict=True)), 3)  # pair ran side by side

    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # fmt: skip
    settings = {"model": model, "batch": batch, "steps": steps, "rounds": rounds, "crop": crop, "precision": precision,
                "encoding": encoding, "decode": decode, "device": str(device), "compile": compile_,
                "channels_last": True, "workers": workers, "threads": torch.get_num_threads()}  # fmt: skip
    result = {
        "benchmark": "train",
        "settings": settings,
        "environment": {**environment(workers), "device_name": _device_name(device)},
        "images_per_sec": {name: round(v, 1) for name, v in per_sec.items()},
        "seconds_per_5120_images": {name: round(5120 / v, 2) for name, v in per_sec.items()},
        "end_to_end_over_model_only": ratio("end_to_end", "model_only"),
        "end_to_end_over_baseline": ratio("end_to_end", "baseline") if baseline else None,
        # On a CPU shared with other jobs, wall time swings with their load; this process's CPU
        # time much less. The baseline's workers are other processes: not counted, not compared.
        "images_per_cpu_second": {name: round(median(per_cpu[name]), 2) for name in ("model_only", "end_to_end")},
        "end_to_end_over_model_only_per_cpu_second": ratio("end_to_end", "model_only", per_cpu),
        "rounds": {name: [round(v, 1) for v in values] for name, values in rounds_of.items()},
        "peak_memory_mb": round(peak, 1),
        "peak_memory_of": "device (max allocated)" if device.type == "cuda" else "process (max RSS)",
    }
    if profile:  # after the timed rounds, so the profiler's overhead is in none of them
        result["profile"] = _profile(stepper, loader, augment, steps, root / "profile-train", position)
    _print(result, per_sec, peak, as_json)
    return result


def _profile(
    stepper: Stepper, loader: Loader, augment: Augment, steps: int, folder, position: list[int]
) -> dict | None:
    """`steps` end-to-end steps under torch.profiler (warm already: one step to start it)."""
    say = functools.partial(print, file=sys.stderr)  # stdout stays the report (--json)
    profiler = StepProfiler(steps, folder, stepper.device, say=say, wait=0)
    _end_to_end(stepper, loader, augment, steps + WARMUP, position, after_step=profiler.step)
    return profiler.close()


def _model_only(stepper: Stepper, images: torch.Tensor, labels: torch.Tensor, steps: int) -> int:
    """The step on one batch resident on the device; returns the images stepped."""
    for _ in range(steps):
        stepper.step(images, labels)
    return steps * len(images)


def _end_to_end(stepper: Stepper, loader: Loader, augment: Augment, steps: int, position: list[int],
                after_step=None) -> int:  # fmt: skip
    """lsvr's Loader + Augment + the step, across epochs until `steps`; returns the steps. Each
    call goes on where the last one stopped (kept on the loader), so the loader's read-ahead
    carries from one timed round to the next as from one epoch to the next in training.
    position: [epoch, step] where the next batch is, updated."""
    done = 0
    epoch, step = position
    while done < steps:
        for b in loader.batches(epoch, step):
            stepper.step(augment.train(b), b.labels)
            b.release()
            done, step = done + 1, b.step + 1
            if after_step is not None:
                after_step()
            if done == steps:
                break
        if step >= len(loader):
            epoch, step = epoch + 1, 0
    position[:] = epoch, step
    return steps


def _baseline(stepper: Stepper, torch_loader: torch.utils.data.DataLoader, norm: tuple, steps: int) -> int:
    """torch's DataLoader over PIL crops, normalised per channel on the device; returns the steps."""
    mean, inv_std = norm  # (1, 3, 1, 1) each
    done = 0
    while done < steps:
        for images, labels in torch_loader:
            x = images.to(stepper.device, non_blocking=True).float().sub_(mean).mul_(inv_std)
            stepper.step(x.contiguous(memory_format=torch.channels_last), labels.to(stepper.device, non_blocking=True))
            done += 1
            if done == steps:
                break
    return steps


def _interleaved(pipelines: dict, device: torch.device, rounds: int) -> tuple[dict, dict]:
    """Images per second, and per CPU-second of this process (its threads, the loader's
    included), of each pipeline in each round: {name: [per round]} each. Each figure is also
    printed to stderr as it comes, one JSON line, so a run cut short still leaves its rounds."""
    rounds_of: dict[str, list[float]] = {name: [] for name in pipelines}
    per_cpu: dict[str, list[float]] = {name: [] for name in pipelines}
    for r in range(rounds):  # interleaved, so a noisy minute on a shared machine hits every pipeline
        for name, run in pipelines.items():
            cpu0 = cpu_seconds()
            images, seconds = _timed(device, run)
            rounds_of[name].append(images / seconds)
            per_cpu[name].append(images / max(cpu_seconds() - cpu0, 1e-9))
            partial = {
                "partial": "train",
                "round": r + 1,
                "pipeline": name,
                "images_per_sec": round(images / seconds, 1),
            }
            print(json.dumps(partial), file=sys.stderr, flush=True)
    return rounds_of, per_cpu


def _print(result: dict, per_sec: dict[str, float], peak: float, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'pipeline':<12}{'images/s':>10}{'s / 5120 images':>17}")
    for name, value in per_sec.items():
        print(f"{name:<12}{value:>10.1f}{5120 / value:>17.2f}")
    over_baseline = result["end_to_end_over_baseline"]
    print(
        f"end_to_end / model_only: {result['end_to_end_over_model_only']:.3f} (per CPU-second:"
        f" {result['end_to_end_over_model_only_per_cpu_second']:.3f})   end_to_end / baseline:"
        f" {'not run' if over_baseline is None else f'{over_baseline:.3f}'}   peak memory: {peak:.0f} MB"
        f" ({result['peak_memory_of']})"
    )


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
