"""`lsvr info DATASET|CHECKPOINT|EXPORT|RUN`: what a thing is, as a dict (printed as text or JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.runs import checkpoints
from lsvr.runs.metrics import complete, read_metrics
from lsvr.runs.record import CheckpointRecord


def _read(path: Path) -> CheckpointRecord:
    """A checkpoint, or a `lsvr export` file as the same parts (its metadata says what it is)."""
    if path.suffix == ".safetensors":
        from lsvr.export import read_export

        return read_export(path)
    return checkpoints.read(path)


def weight_problems(path: Path, state: CheckpointRecord) -> list[str]:
    """One line per model (or EMA) tensor that holds NaN or infinity (or none when all are finite)."""
    if not state.model:
        return [f"{path}: holds no model weights"]
    problems = []
    named = [*state.model.items(), *((f"ema.{name}", t) for name, t in (state.ema or {}).items())]
    for name, tensor in named:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                problems.append(f"{path}: {name} holds {bad} non-finite values of {tensor.numel()}")
    return problems


def describe_onnx(path: Path, *, verify: bool = False) -> dict[str, Any]:
    """An `lsvr export` .onnx file: what its metadata records, and its input in words; verify:
    the graph scores a batch of grey images with finite logits, one per class."""
    from lsvr.export_onnx import check_onnx_extra, input_text, read_onnx

    check_onnx_extra("reading")
    model, state = read_onnx(path)  # loads in onnxruntime: a graph it refuses is an InputError
    pre = state.preprocess
    info = {"kind": "onnx export", "path": str(path), "model": state.setting("model", "name"), "step": state.step,
            "classes": len(state.classes), "input": input_text(pre), "metrics": state.metrics}  # fmt: skip
    if verify:
        logits = model(torch.full((2, pre.channels or 3, pre.eval_crop, pre.eval_crop), 128.0))
        fine = logits.shape == (2, len(state.classes)) and bool(torch.isfinite(logits).all())
        info["problems"] = (
            [] if fine else [f"{path}: scores grey images as {tuple(logits.shape)} logits, not all finite"]
        )
        info["verified"] = fine
    return info


def describe_checkpoint(path: Path, *, verify: bool = False) -> dict[str, Any]:
    if path.suffix == ".onnx":
        return describe_onnx(path, verify=verify)
    state = _read(path)
    pre = state.preprocess
    # a run's checkpoint or its export, not weights converted or from elsewhere: those have no step
    trained = bool(state.loader) or path.suffix == ".safetensors"
    info = {
        "kind": "export" if path.suffix == ".safetensors" else "checkpoint",
        "path": str(path),
        "model": state.setting("model", "name"),
        "step": state.step if trained else None,
        "epoch": state.epoch if trained else None,
        "classes": len(state.classes),
        "crop": pre.crop if pre else None,
        "input_size": pre.size if pre else None,
        "normalize": pre.normalize if pre else None,
        "metrics": state.metrics if trained else None,
        "weights": "ema" if state.weights is state.ema else "model",  # those eval, predict and export use
        "lsvr_version": state.provenance.get("lsvr_version"),
        "commit": state.provenance.get("commit"),
    }
    if info["kind"] == "export":  # an export carries weights and preprocessing, not the run's history
        # (its metadata's `weights` says whether they are the EMA's: the file holds only those)
        info = {k: v for k, v in info.items() if k not in ("epoch", "lsvr_version", "commit", "weights")}
    if verify:
        info["problems"] = weight_problems(path, state)
        info["verified"] = not info["problems"]
    return info


def verify_run(folder: Path) -> list[str]:
    """Every step file of a run's checkpoints folder loads and holds finite weights."""
    steps = sorted(folder.glob("step-*.pt"))
    problems = [] if steps else [f"{folder}: no checkpoint"]
    for path in steps:
        try:
            problems += weight_problems(path, checkpoints.read(path))
        except InputError as exc:
            problems.append(str(exc))
    return problems


def varying_shape(sizes: dict[str, Any], *, channels: int) -> str:
    """The shape of a set of varying shapes (prepare --resize short) in words: its policy."""
    cap = sizes.get("max_size")
    longer = f"longer side at most {cap} (the shorter then less)" if cap else "aspect kept"
    return f"varying: shorter side {sizes['shorter_side']}, {longer}, {channels} channels"


def describe(target: Path, *, verify: bool = False) -> dict[str, Any]:
    if not target.exists():
        raise InputError(f"{target}: no such file or directory")
    if target.is_file():
        return describe_checkpoint(checkpoints.follow_pointer(target), verify=verify)
    if (target / "meta.json").is_file():
        dataset = PreparedDataset(target)
        info = {"kind": "dataset", **dataset.describe()}
        if dataset.variable:  # meta.json's [0, 0, C] says "each its own": say the policy instead
            info["image_shape"] = varying_shape(dataset.size_policy(), channels=int(dataset.shape[2]))
        if verify:
            info["problems"] = dataset.verify()
            info["verified"] = not info["problems"]
        return info
    if (target / "config.yaml").is_file() or (target / "checkpoints").is_dir():
        latest = checkpoints.find_valid(target)
        records = read_metrics(target / "metrics.jsonl") if (target / "metrics.jsonl").is_file() else []
        val = complete(records, "val", ("top1",))
        info = {
            "kind": "run",
            "path": str(target),
            "latest_checkpoint": str(latest) if latest else None,
            "checkpoint": describe_checkpoint(latest) if latest else None,
            "last_val": val[-1] if val else None,
            "best_top1": max((r["top1"] for r in val), default=None),
        }
        if verify:
            info["problems"] = verify_run(target / "checkpoints")
            info["verified"] = not info["problems"]
        return info
    raise InputError(f"{target}: not a prepared dataset, checkpoint or run folder")
