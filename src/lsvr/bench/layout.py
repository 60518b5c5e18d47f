"""`lsvr bench layout`: the training step (forward, backward, update) of one model on a batch
resident on the device, in fp32 and in bf16 autocast, each with the model and batch contiguous
(NCHW) and channels_last (NHWC): the four settings of `train.precision` x `train.channels_last`,
in one run. Each setting has its own copy of the model (same seed) and optimizer; they run
`steps` steps each, interleaved over `rounds` rounds (the order turned each round), after
warm-up steps; images/s are the medians over the rounds, each ratio the median of the rounds'
ratios to fp32_contiguous (the baseline: what a config without either key runs).
"""

from __future__ import annotations

import json
import time
from statistics import median

import torch

from lsvr.bench.timing import environment
from lsvr.config import GuardConfig, OptimConfig, TrainConfig
from lsvr.device import pick_device
from lsvr.models.registry import build_model, model_spec
from lsvr.train.optim import build_optimizer
from lsvr.train.step import apply_update, step_forward_backward

SETTINGS = {  # name: (train.precision, train.channels_last); the first is the baseline
    "fp32_contiguous": ("fp32", False),
    "fp32_channels_last": ("fp32", True),
    "bf16_contiguous": ("bf16", False),
    "bf16_channels_last": ("bf16", True),
}
BASELINE = "fp32_contiguous"
WARMUP_STEPS = 2  # the first steps pay for allocations and oneDNN's (cuDNN's) kernel choices
SMALL_CROP = 28  # the models declaring it are Fashion-MNIST's: 1 channel, 10 classes


class LayoutStepper:
    """One model in one memory format, its optimizer, and the trainer's step in one precision."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str, channels_last: bool) -> None:
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.format)
        self.optimizer = build_optimizer(self.model, OptimConfig(lr=0.001))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.train = TrainConfig(precision=precision, channels_last=channels_last)
        self.scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling
        self.guard = GuardConfig()

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        step_forward_backward(self.model, self.optimizer, self.scaler, images, labels, self.train)
        apply_update(self.params, self.optimizer, self.scaler, self.guard, None)


def bench_layout(*, model: str, batch: int, steps: int, rounds: int, device_name: str, crop: int | None = None,
                 as_json: bool = False) -> dict:  # fmt: skip
    """Time the four settings; print a table (or JSON) and return the result. The models that
    declare a 28 px crop take Fashion-MNIST's input (1 channel, 10 classes), the rest ImageNet's."""
    device = pick_device(device_name, setting="--device")
    spec = model_spec(model)
    crop = crop or spec.default_crop
    small = spec.default_crop == SMALL_CROP
    channels, classes = (1, 10) if small else (3, 1000)
    steppers = {}
    for name, (precision, channels_last) in SETTINGS.items():
        torch.manual_seed(0)  # the same weights in every setting
        net = build_model(model, num_classes=classes, in_channels=channels, crop=crop)
        steppers[name] = LayoutStepper(net, device, precision, channels_last)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, channels, crop, crop, generator=generator).to(device)  # (B, C, crop, crop)
    labels = torch.randint(0, classes, (batch,), generator=generator).to(device)  # (B,)
    inputs = {name: images.contiguous(memory_format=s.format) for name, s in steppers.items()}
    for name, stepper in steppers.items():
        for _ in range(WARMUP_STEPS):
            stepper.step(inputs[name], labels)
    per_round = _interleaved(steppers, inputs, labels, steps=steps, rounds=rounds)
    per_sec = {name: median(values) for name, values in per_round.items()}
    ratio = {name: round(median(x / y for x, y in zip(values, per_round[BASELINE], strict=True)), 3)
             for name, values in per_round.items()}  # fmt: skip
    settings = {"model": model, "crop": crop, "channels": channels, "classes": classes, "batch": batch, "steps": steps,
                "rounds": rounds, "warmup_steps": WARMUP_STEPS, "device": str(device),
                "threads": torch.get_num_threads()}  # fmt: skip
    # without AVX512_BF16 or AMX a CPU has no bf16 arithmetic: its bf16 kernels emulate it, slowly
    cpu_capability = torch.backends.cpu.get_cpu_capability()
    env = {**environment(workers=0), "device_name": _device_name(device), "cpu_capability": cpu_capability}
    result = {
        "benchmark": "layout",
        "settings": settings,
        "environment": env,
        "images_per_sec": {name: round(v, 1) for name, v in per_sec.items()},
        "ratio_to_baseline": ratio,
        "baseline": BASELINE,
        "fastest": max(per_sec, key=per_sec.__getitem__),
        "rounds": {name: [round(v, 1) for v in values] for name, values in per_round.items()},
    }
    _print(result, as_json)
    return result


def _interleaved(steppers: dict, inputs: dict, labels: torch.Tensor, *, steps: int, rounds: int) -> dict:
    """Images per second of each setting in each round: {name: [per round]}."""
    per_round: dict[str, list[float]] = {name: [] for name in steppers}
    names = list(steppers)
    for r in range(rounds):  # a noisy minute on a shared machine hits every setting, none always first
        for name in names[r % len(names) :] + names[: r % len(names)]:
            stepper = steppers[name]
            device = labels.device
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                stepper.step(inputs[name], labels)
            _sync(device)
            per_round[name].append(steps * len(labels) / (time.perf_counter() - start))
    return per_round


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    s, env = result["settings"], result["environment"]
    where = env["device_name"] if s["device"].startswith("cuda") else f"cpu, {env['cpu_capability']}"
    print(f"{s['model']} at {s['crop']} px, {s['channels']} channel(s), batch {s['batch']}, {where},"
          f" {s['threads']} thread(s), {s['rounds']} round(s) of {s['steps']} step(s)")  # fmt: skip
    print(f"{'setting':<20}{'images/s':>10}{'/ ' + BASELINE:>20}")
    for name, value in result["images_per_sec"].items():
        print(f"{name:<20}{value:>10.1f}{result['ratio_to_baseline'][name]:>20.3f}")
    print(f"fastest: {result['fastest']}")
