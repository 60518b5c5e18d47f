"""Check that torchvision's weights give the same logits in lsvr's models.

    OMP_NUM_THREADS=2 PYTHONPATH=src:/tmp/tvwheel/x python scripts/torchvision_equivalence.py [names...]

Needs torchvision beside lsvr's torch (an unpacked wheel on PYTHONPATH, or a throwaway venv with
`pip install torch==2.14.1 torchvision==0.29.1` and lsvr on its path); lsvr never imports it,
and the test suite does not run this. For every model in tests/data/torchvision_keys.json
(or those named): build torchvision's and lsvr's; give torchvision's random values where its
init would hide a path (the norms' affine parameters, ViT's zeroed head, ConvNeXt's 1e-6
layer scale) and BatchNorm running statistics measured on a random batch; load its state_dict
into lsvr's strictly; run both in eval mode, fp32, on the same batch of 2 at 224; print
max|diff| / max|logit|. Pass: at most 1e-4. Exits 1 if any model fails. About 2.5 minutes
for all 17 on 2 CPU threads; resnet152 and the VGGs take the longest.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision import models as tv

from lsvr.models.registry import MODELS

MANIFEST = Path(__file__).resolve().parent.parent / "tests" / "data" / "torchvision_keys.json"
PASS = 1e-4  # max|diff| as a fraction of the largest |logit|, fp32 (issue 13)


@torch.no_grad()
def give_signal(model: nn.Module, generator: torch.Generator) -> None:
    """Values torchvision's init leaves at constants, which would let a wrong eps, a missing
    affine or a skipped branch pass unseen."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)) and module.weight is not None:
            module.weight.uniform_(0.5, 1.5, generator=generator)
            module.bias.normal_(0.0, 0.1, generator=generator)
        if hasattr(module, "layer_scale"):  # ConvNeXt: 1e-6 at init hides the blocks
            module.layer_scale.normal_(0.5, 0.1, generator=generator)
    head = getattr(getattr(model, "heads", None), "head", None)
    if head is not None:  # ViT: torchvision zeroes the head, so every logit would be 0
        head.weight.normal_(0.0, 0.02, generator=generator)
    calibrate_batchnorm(model, generator)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Running statistics measured on a random batch (as training leaves them), not init's 0 and 1:
    with 0 and 1 a ResNet's residual sums grow by about 2x a block (resnet152's logits reached 4e11)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch sets the statistics outright
    model.train()
    model(torch.randn(4, 3, 224, 224, generator=generator))  # (4, 3, H, W): 4 x 49 samples a channel at 7x7
    for norm in norms:
        norm.momentum = 0.1


def compare(name: str, entry: dict, image: torch.Tensor) -> dict:
    torch.manual_seed(0)
    theirs = getattr(tv, entry["torchvision"])(num_classes=1000, **entry["kwargs"])
    give_signal(theirs, torch.Generator().manual_seed(1))
    ours = MODELS[name].build(num_classes=1000, in_channels=3, crop=224, dropout=0.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        a, b = theirs(image), ours(image)  # (2, 1000) each
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape == (2, 1000)
    largest = a.abs().max().item()
    diff = (a - b).abs().max().item()
    return {"model": name, "keys": len(theirs.state_dict()), "max_logit": largest, "max_diff": diff,
            "ratio": diff / largest, "ok": diff <= PASS * largest}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="models to check (default: all in the manifest)")
    args = parser.parse_args()
    models = json.loads(MANIFEST.read_text())["models"]
    names = args.names or list(models)
    image = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<14} {'keys':>5} {'max|logit|':>11} {'max|diff|':>10} {'ratio':>9}  pass (<= {PASS:g})")
    failed = []
    for name in names:
        start = time.perf_counter()
        row = compare(name, models[name], image)
        print(f"{name:<14} {row['keys']:>5} {row['max_logit']:>11.4f} {row['max_diff']:>10.2e} {row['ratio']:>9.2e}"
              f"  {'yes' if row['ok'] else 'NO'}  ({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
        if not row["ok"]:
            failed.append(name)
        gc.collect()
    print("all pass" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
