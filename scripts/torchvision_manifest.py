"""Write tests/data/torchvision_keys.json: torchvision's state_dict keys and shapes, in order,
for every lsvr model that has a torchvision counterpart, at 1000 classes.

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tv/bin/python scripts/torchvision_manifest.py

or, with an unpacked torchvision wheel beside the project's own torch (only its Python
model code is used; the models are built on the meta device, so no compiled op runs):

    PYTHONPATH=/tmp/tvwheel/x python scripts/torchvision_manifest.py

torchvision is never a dependency of lsvr: the json is generated once and committed, and
tests/test_torchvision_keys.py checks lsvr's models against it without torchvision.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from torchvision import models as tv

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "torchvision_keys.json"

# lsvr name -> torchvision builder and its keywords (googlenet: without the auxiliary heads,
# which is lsvr's default; init_weights=True silences torchvision's warning and changes no key).
COUNTERPARTS: dict[str, tuple[str, dict]] = {
    "alexnet_tv": ("alexnet", {}),
    **{f"resnet{d}": (f"resnet{d}", {}) for d in (18, 34, 50, 101, 152)},
    **{f"vgg{d}{bn}": (f"vgg{d}{bn}", {}) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": True}),
    "vit_b_16": ("vit_b_16", {}),
    "convnext_tiny": ("convnext_tiny", {}),
}


def manifest() -> dict:
    models = {}
    for name, (tv_name, kwargs) in COUNTERPARTS.items():
        with torch.device("meta"):
            model = getattr(tv, tv_name)(num_classes=1000, **kwargs)
        models[name] = {
            "torchvision": tv_name,
            "kwargs": kwargs,
            "keys": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        }
    return {"torchvision": torchvision.__version__, "torch": torch.__version__, "models": models}


def write(data: dict, path: Path) -> None:
    """One line per model: small (about 120 kB), and a diff names the models that changed."""
    models = [
        f"    {json.dumps(name)}: {json.dumps(entry, separators=(',', ':'))}" for name, entry in data["models"].items()
    ]
    lines = ["{", f'  "torchvision": {json.dumps(data["torchvision"])},', f'  "torch": {json.dumps(data["torch"])},']
    lines += ['  "models": {', ",\n".join(models), "  }", "}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    data = manifest()
    write(data, OUT)
    assert json.loads(OUT.read_text()) == data
    total = sum(len(m["keys"]) for m in data["models"].values())
    print(f"wrote {OUT}: {len(data['models'])} models, {total} keys, torchvision {data['torchvision']}")


if __name__ == "__main__":
    main()
