"""`lsvr export`: a checkpoint's weights as safetensors, for sharing (no pickle at all).

The weights are the ones the run evaluated (CheckpointRecord.weights): the EMA's under train.ema
with train.ema_eval, else the model's.

The file holds the model's tensors, the mean image as `lsvr.mean_image` (none for a record
of channel statistics alone: a set prepared with --resize short), and in its
metadata (`lsvr`, JSON) what inference needs: the model section of the config, the class
names and the preprocessing. `lsvr predict` and `lsvr eval` read it like a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from lsvr.errors import InputError
from lsvr.folders import write_atomic
from lsvr.preprocess import Preprocess
from lsvr.runs.record import CheckpointRecord

MEAN = "lsvr.mean_image"


def export(state: CheckpointRecord, out: Path) -> Path:
    from safetensors.torch import save

    if out.suffix != ".safetensors":
        raise InputError(f"{out}: the export is a .safetensors file")
    pre = state.preprocess
    info = {"model": state.config.get("model", {}), "classes": state.classes,
            "preprocess": pre.to_dict(mean_image=False), "step": state.step, "metrics": state.metrics,
            "weights": "ema" if state.weights is state.ema else "model"}  # fmt: skip
    tensors = {name: t.detach().contiguous() for name, t in state.weights.items()}  # the EMA's where validated
    if pre.mean_image is not None:
        tensors[MEAN] = pre.mean_image.float().contiguous()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # one atomic write: a failed export leaves an earlier OUT as it was, and the file gets the
        # mode the umask gives (safetensors' own save_file creates it 0600)
        write_atomic(out, save(tensors, metadata={"lsvr": json.dumps(info)}))
    except OSError as exc:
        raise InputError(f"{out}: could not be written ({exc.strerror or exc})") from None
    return out


def read_export(path: Path) -> CheckpointRecord:
    """A .safetensors export as the record of the checkpoint parts that inference uses."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("lsvr", "null"))
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("preprocess"), dict):
        raise InputError(f"{path}: a safetensors file without lsvr's metadata (make it with `lsvr export`)")
    try:
        pre = Preprocess.from_dict({**meta["preprocess"], "mean_image": tensors.pop(MEAN, None)},
                                   classes=meta["classes"])  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: lsvr's metadata does not read as a preprocess record ({exc})") from None
    return CheckpointRecord(model=tensors, config={"model": meta.get("model") or {}}, preprocess=pre,
                            step=meta.get("step") or 0, metrics=meta.get("metrics") or {})  # fmt: skip
