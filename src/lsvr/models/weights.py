"""Starting weights from a file: a torchvision state_dict or an lsvr checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lsvr.errors import InputError
from lsvr.safe_load import safe_load
from lsvr.train import checkpoint
from lsvr.train.record import CheckpointRecord, is_checkpoint


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safe load); an lsvr checkpoint gives its "model", a run
    folder its latest checkpoint's (as `lsvr eval RUN` reads it), a `latest`/`best` pointer the
    step file's it names, a .safetensors file (an `lsvr export`) its tensors."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder (expected a weights file or a run folder)")
    if path.is_dir():
        found = checkpoint.find_valid(path)
        if found is None:
            raise InputError(checkpoint.none_found(path, expected="a weights file or a run folder"))
        path = found
    path = checkpoint.follow_pointer(path)  # RUN/checkpoints/best: the step file it names
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    state = safe_load(path, what="weights")  # on the CPU
    if is_checkpoint(state):
        state = CheckpointRecord.from_dict(state, where=path).model
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state_dict of tensors")
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a safetensors file: an `lsvr export` (its mean image left out, as
    it is no weight) or another tool's; load_matching says whether they fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lsvr.export import MEAN

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    tensors.pop(MEAN, None)
    return tensors


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> list[str]:
    """Load every tensor whose name and shape match; the others keep their fresh init.

    Returns the names left at their init (e.g. a classifier of another class count). A
    file that matches none of the model's layers is an InputError: it is another model.
    """
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    body = [k for k in own if k in matched]
    if not body or len(body) < len(own) // 2:
        raise InputError(f"{source}: its tensors do not fit this model (matched {len(body)} of {len(own)})")
    model.load_state_dict(matched, strict=False)
    return [k for k in own if k not in matched]
