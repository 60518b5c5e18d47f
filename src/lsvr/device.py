"""The device a command runs on: `cpu`, `cuda` or `auto`."""

from __future__ import annotations

import torch


def pick_device(name: str, local_rank: int = 0, *, setting: str = "train.device") -> torch.device:
    """`setting` names where the choice came from in the refusal (a config key or a flag)."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from lsvr.errors import InputError

        sep = " " if setting.startswith("--") else "="
        raise InputError(f"{setting}{sep}cuda but no CUDA device is available")
    return torch.device("cuda", local_rank)
