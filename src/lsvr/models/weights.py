"""Starting weights from a file: a torchvision state_dict or an lsvr checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lsvr.errors import InputError
from lsvr.runs import checkpoints
from lsvr.runs.record import CheckpointRecord, is_checkpoint
from lsvr.safe_load import safe_load


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safe load); an lsvr checkpoint gives its weights to
    evaluate (CheckpointRecord.weights: the EMA's where the run validated with them), a run
    folder its latest checkpoint's (as `lsvr eval RUN` reads it), a `latest`/`best` pointer the
    step file's it names, a .safetensors file (an `lsvr export`) its tensors."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder (expected a weights file or a run folder)")
    if path.is_dir():
        found = checkpoints.find_valid(path)
        if found is None:
            raise InputError(checkpoints.none_found(path, expected="a weights file or a run folder"))
        path = found
    path = checkpoints.follow_pointer(path)  # RUN/checkpoints/best: the step file it names
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    state = safe_load(path, what="weights")  # on the CPU
    if is_checkpoint(state):
        state = CheckpointRecord.from_dict(state, where=path).weights  # the EMA's where the run validated with them
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
        raise InputError(f"{path}: a truncated or unreadable safetensors file ({exc})") from None
    tensors.pop(MEAN, None)
    return tensors


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> list[str]:
    """Load a file's tensors into the model; returns the names left at their fresh init: the
    classifier, where the file has another class count (the only difference allowed).

    Anything else that differs means a file for another architecture: an InputError naming
    the first key that differs, in the model's order and then the file's, with both shapes.
    """
    own = model.state_dict()
    head = _head(own, state)
    for key, tensor in own.items():
        if key not in state:
            if not key.endswith("num_batches_tracked"):  # a counter older torchvision files lack
                raise _misfit(source, f"{key} is missing in the file (the model's is {_shape(tensor)})")
        elif state[key].shape != tensor.shape and key not in head:
            raise _misfit(source, f"{key} is {_shape(state[key])} in the file, {_shape(tensor)} in the model")
    for key, tensor in state.items():
        # a part this model was built without (googlenet's aux heads: torchvision's files hold them)
        if key not in own and getattr(model, key.split(".")[0], True) is not None:
            raise _misfit(source, f"{key} ({_shape(tensor)} in the file) is missing in the model")
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in head}, strict=False)
    return head


def _head(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """The model's keys sized by the class count, where the file has another: their first
    dimension is the model's output count there and the file's here (the last tensor of each
    state dict is the classifier's bias), the other dimensions equal."""
    if not own or not state:
        return []
    classes, file_classes = next(reversed(own.values())).shape[:1], next(reversed(state.values())).shape[:1]
    if classes == file_classes:
        return []
    return [k for k, v in own.items() if k in state and v.shape[:1] == classes and state[k].shape[:1] == file_classes
            and v.shape[1:] == state[k].shape[1:]]  # fmt: skip


def _shape(tensor: torch.Tensor) -> str:
    return str(tuple(tensor.shape))  # (64, 3, 7, 7); (10,)


def _misfit(source: str, what: str) -> InputError:
    return InputError(f"{source}: its tensors do not fit this model (another architecture?): {what}")
