"""What a checkpoint holds beyond the weights: the run's position (RunState) and the RNG states
(RNGs), each a part that saves and loads itself (lsvr.train.parts; the whole record: lsvr.runs.record)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from lsvr.errors import InputError


class RNGs:
    """Every RNG of the process (torch's, CUDA's, numpy's and Python's global ones) as one part:
    its state as tensors, lists and numbers (weights_only=True refuses numpy's tuple)."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
                "kind": str(kind),
            },
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
        p = state["python"]
        random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


@dataclass
class RunState:
    """Where a run stands: what a checkpoint needs, beyond the weights and RNGs, to continue."""

    global_batch: int  # the loader position counts global batches of this size
    step: int = 0  # updates done (skipped ones included)
    epoch: int = 0  # the epoch in progress, from 0
    batch: int = 0  # global batches of that epoch done: where its loader continues
    best_top1: float | None = None  # the best validation top-1 so far
    last_val: dict | None = None  # the latest validation's metrics
    budget_steps: int | None = None  # the total steps train.time_budget_s fixed (lsvr.train.budget)
    budget_replan: list[int] | None = None  # [step, planned]: the second plan's step and the first's total

    KEYS: ClassVar[tuple[str, ...]] = ("step", "epoch", "loader", "metrics", "best_top1", "budget_steps",
                                       "budget_replan")  # fmt: skip

    def position(self) -> dict[str, int]:
        """Where the loader stands, in global batches and in samples of the epoch's global
        order: the same at any world size, so a run resumes at another one."""
        return {"epoch": self.epoch, "step": self.batch, "sample": self.batch * self.global_batch,
                "global_batch": self.global_batch}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's entries for the run's position and scores."""
        return {"step": self.step, "epoch": self.epoch, "loader": self.position(), "metrics": self.last_val or {},
                "best_top1": self.best_top1, "budget_steps": self.budget_steps,
                "budget_replan": self.budget_replan}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From a checkpoint (state_dict's entries); refused where its loader position counts
        global batches of another size."""
        saved_batch = state["loader"].get("global_batch", self.global_batch)
        if saved_batch != self.global_batch:  # the position counts global batches: they must agree
            raise InputError(f"written with train.global_batch={saved_batch}; resume with it")
        self.step, self.epoch, self.batch = state["step"], state["loader"]["epoch"], state["loader"]["step"]
        self.best_top1, self.last_val = state.get("best_top1"), state.get("metrics") or None
        self.budget_steps, self.budget_replan = state.get("budget_steps"), state.get("budget_replan")
