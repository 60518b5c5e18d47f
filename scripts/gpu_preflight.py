"""The GPU check's first step (scripts/gpu_check.sh): can this machine run the rest at all?

python3 scripts/gpu_preflight.py DEVICE OUT.json

`lsvr doctor`'s report (the one version reporter), every import the later steps need (NEEDED:
each missing one named with the steps that need it; OPTIONAL: reported), then three bf16
training steps of the paper's AlexNet on one resident batch of 256 (2 on CPU), the loss
finite. Writes what it found to OUT.json and exits 1, naming the failure (every missing
import), when the check cannot go on; takes seconds (a dry run on CPU included).
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import time
from pathlib import Path

# Every import the steps of scripts/gpu_check.sh make, by the steps that need it: one missing
# stops the check here, named, instead of a later step failing on it (cuda_tests without pytest
# left `no tally`). tests/test_gpu_preflight.py checks these against the code the steps run and
# against pytest's own requirements; `make gpu-wheels` puts wheels of what the machine may lack in .whl/.
NEEDED = {
    "every step (lsvr)": ("numpy", "yaml", "torch", "simplejpeg", "PIL", "tqdm", "braceexpand", "lsvr.cli",
                          "lsvr.data.prepare", "lsvr.train.trainer", "lsvr.evaluate", "lsvr.doctor"),
    "preflight, bench, syncs": ("lsvr.bench.train", "lsvr.train.engine", "lsvr.data.device_decode"),
    "cuda_tests (pytest and its requirements)": ("pytest", "pluggy", "iniconfig", "packaging", "pygments",
                                                  "pytest_timeout"),
}  # fmt: skip
OPTIONAL = {  # reported, not needed: what uses each
    "torchvision": "nvJPEG decode (bf16_jpeg_device) and the loader's torchvision baseline",
    "tensorboard": "train.tensorboard",
    "safetensors": "lsvr export, pretrained weights",
    "scipy": "the ILSVRC devkit's meta.mat",
    "matplotlib": "lsvr plot, lsvr eval --report",
    "onnxruntime": "lsvr predict of an .onnx export",
}


def main(device_name: str, out: str) -> int:
    began = time.perf_counter()
    found: dict = {"imports": {}}
    missing = []
    needed = [(name, step) for step, names in NEEDED.items() for name in names]
    for name, step in [*needed, *OPTIONAL.items()]:
        try:
            module = importlib.import_module(name)
            found["imports"][name] = getattr(module, "__version__", "ok")
        except Exception as exc:  # each import's failure is reported, not raised
            found["imports"][name] = f"missing ({step}): {exc}"
            if name not in OPTIONAL:
                missing.append(f"{name} ({step}: {exc})")
    failure = f"missing imports: {'; '.join(missing)}; see `make gpu-wheels`" if missing else None
    if not failure:
        from lsvr.doctor import diagnose

        found["doctor"] = diagnose(None)
        failure = _steps(device_name, found)
    found["seconds"] = round(time.perf_counter() - began, 2)
    found["ok"] = not failure
    found["failure"] = failure or None
    Path(out).write_text(json.dumps(found, indent=2, default=str))
    print(json.dumps({k: found[k] for k in ("ok", "failure", "seconds", "steps")} if "steps" in found else found,
                     default=str))  # fmt: skip
    return 0 if found["ok"] else 1


def _steps(device_name: str, found: dict) -> str | None:
    """Three bf16 AlexNet steps on a resident batch; None when they ran with a finite loss."""
    import torch

    from lsvr.bench.train import Stepper
    from lsvr.device import pick_device

    try:
        device = pick_device(device_name, setting="DEVICE")
    except Exception as exc:
        return f"device {device_name}: {exc}"
    from lsvr.models.alexnet import PaperLRN

    PaperLRN.FUSED = False  # seconds, not a compile: the fused LRN is the CUDA tests' to check
    batch = 256 if device.type == "cuda" else 2  # CPU bf16 convolutions are slow: a dry run, not a figure
    stepper = Stepper("alexnet", 227, device, "bf16", "none")
    images = torch.randn(batch, 3, 227, 227, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    losses, times = [], []
    for _ in range(3):
        start = time.perf_counter()
        losses.append(float(stepper.step(images, labels)))  # float(): waits for the step
        times.append(round(time.perf_counter() - start, 3))
    found["steps"] = {"device": str(device), "batch": batch, "losses": losses, "seconds": times,
                      "images_per_sec_last": round(batch / max(times[-1], 1e-9), 1)}  # fmt: skip
    if not all(math.isfinite(x) for x in losses):
        return f"bf16 AlexNet steps gave a non-finite loss: {losses}"
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
