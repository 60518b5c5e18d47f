"""`lsvr export`: a checkpoint's weights as safetensors, for sharing (no pickle at all).

The file holds the model's tensors, the mean image as `lsvr.mean_image`, and in its
metadata (`lsvr`, JSON) what inference needs: the model section of the config, the class
names and the preprocessing. `lsvr predict` and `lsvr eval` read it like a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lsvr.errors import InputError

MEAN = "lsvr.mean_image"


def export(state: dict[str, Any], out: Path) -> Path:
    from safetensors.torch import save_file

    if out.suffix != ".safetensors":
        raise InputError(f"{out}: the export is a .safetensors file")
    preprocess = {k: v for k, v in state["preprocess"].items() if k != "mean_image"}
    info = {"model": state["config"]["model"], "classes": list(state["classes"]), "preprocess": preprocess,
            "step": state.get("step"), "metrics": state.get("metrics") or {}}  # fmt: skip
    tensors = {name: t.detach().contiguous() for name, t in state["model"].items()}
    tensors[MEAN] = state["preprocess"]["mean_image"].float().contiguous()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"lsvr": json.dumps(info)})
        # safetensors creates its file 0600; a file for sharing gets the mode the umask gives
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)  # a failed export leaves an earlier OUT as it was
    except OSError as exc:
        raise InputError(f"{out}: could not be written ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def read_export(path: Path) -> dict[str, Any]:
    """A .safetensors export as the parts of a checkpoint that inference uses."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("lsvr", "null"))
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    if not isinstance(meta, dict) or MEAN not in tensors:
        raise InputError(f"{path}: a safetensors file without lsvr's metadata (make it with `lsvr export`)")
    preprocess = {**meta["preprocess"], "mean_image": tensors.pop(MEAN)}
    return {"model": tensors, "config": {"model": meta["model"]}, "classes": meta["classes"],
            "preprocess": preprocess, "step": meta.get("step"), "metrics": meta.get("metrics", {})}  # fmt: skip
