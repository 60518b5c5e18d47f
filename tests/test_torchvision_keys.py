"""lsvr's models against torchvision's state_dict layout, without torchvision.

tests/data/torchvision_keys.json was generated once, with torchvision 0.28.0, by
`PYTHONPATH=/tmp/tvwheel/x python scripts/torchvision_manifest.py` (torchvision's wheel unpacked
beside lsvr's torch; or `pip install torch==2.14.1 torchvision==0.29.1` in a throwaway venv and
run the script there), and committed: for each lsvr model with a torchvision counterpart, the
ordered [key, shape] list of torchvision's state_dict at 1000 classes, built on the meta device.
Same keys, order and shapes mean torchvision's weight files load into lsvr's model strictly.
That the same weights also give the same logits is checked by scripts/torchvision_equivalence.py
(needs torchvision; not part of the suite).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lsvr.models.registry import MODELS

MANIFEST = json.loads((Path(__file__).parent / "data" / "torchvision_keys.json").read_text())


def test_manifest_covers_the_torchvision_models() -> None:
    expected = {"alexnet_tv", "googlenet", "vit_b_16", "convnext_tiny"}
    expected |= {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    expected |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    assert set(MANIFEST["models"]) == expected
    assert expected <= set(MODELS)


@pytest.mark.parametrize("name", list(MANIFEST["models"]))
def test_state_dict_matches_torchvision(name: str) -> None:
    with torch.device("meta"):
        model = MODELS[name].build(num_classes=1000, in_channels=3, crop=224, dropout=0.5)
    ours = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    theirs = MANIFEST["models"][name]["keys"]
    assert [k for k, _ in ours] == [k for k, _ in theirs], "keys or their order differ"
    assert ours == theirs, [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b][:5]
