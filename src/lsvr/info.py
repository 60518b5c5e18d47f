"""`lsvr info DATASET|CHECKPOINT|RUN`: what a thing is, as a dict (printed as text or JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.train import checkpoint
from lsvr.train.metrics import read_metrics


def describe_checkpoint(path: Path) -> dict[str, Any]:
    state = checkpoint.load(path)
    pre = state.get("preprocess", {})
    return {
        "kind": "checkpoint",
        "path": str(path),
        "model": state.get("config", {}).get("model", {}).get("name"),
        "step": state.get("step"),
        "epoch": state.get("epoch"),
        "classes": len(state.get("classes", [])),
        "crop": pre.get("crop"),
        "input_size": pre.get("size"),
        "normalize": pre.get("normalize"),
        "metrics": state.get("metrics"),
        "lsvr_version": state.get("lsvr_version"),
        "commit": state.get("commit"),
    }


def describe(target: Path, *, verify: bool = False) -> dict[str, Any]:
    if not target.exists():
        raise InputError(f"{target}: no such file or directory")
    if target.is_file():
        return describe_checkpoint(target)
    if (target / "meta.json").is_file():
        dataset = PreparedDataset(target)
        info = {"kind": "dataset", **dataset.describe()}
        if verify:
            info["problems"] = dataset.verify()
            info["verified"] = not info["problems"]
        return info
    if (target / "config.yaml").is_file() or (target / "checkpoints").is_dir():
        latest = checkpoint.find(target)
        records = read_metrics(target / "metrics.jsonl") if (target / "metrics.jsonl").is_file() else []
        val = [r for r in records if r.get("kind") == "val"]
        return {
            "kind": "run",
            "path": str(target),
            "latest_checkpoint": str(latest) if latest else None,
            "checkpoint": describe_checkpoint(latest) if latest else None,
            "last_val": val[-1] if val else None,
            "best_top1": max((r["top1"] for r in val), default=None),
        }
    raise InputError(f"{target}: not a prepared dataset, checkpoint or run folder")
