"""What `lsvr eval --report` keeps of each batch that lsvr.evaluate scores: the k most likely
classes and their probabilities, and the true class's probability, from the very probabilities
evaluate counts (every view averaged), so the report's top-1 is eval's."""

from __future__ import annotations

import numpy as np
import torch

from lsvr.report.numbers import Predictions


class Collector:
    """evaluate(..., keep=collector): called with each batch's (B, classes) probabilities and (B,)
    labels, in the loader's order (evaluation: the set's rows in order, each once)."""

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, ...]] = []

    def __call__(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        values, indices = probs.topk(min(5, probs.shape[1]), dim=1)  # (B, k): the ranking evaluate counts
        true = probs.gather(1, labels[:, None])[:, 0]  # (B,)
        self.parts.append(tuple(t.cpu() for t in (labels, indices, values, true)))

    def predictions(self) -> Predictions:
        if not self.parts:
            empty = np.zeros((0, 1), np.int64)
            return Predictions(empty[:, 0], empty, empty.astype(np.float32), empty[:, 0].astype(np.float32))
        labels, top, top_probs, true = (torch.cat(column).numpy() for column in zip(*self.parts, strict=True))
        return Predictions(labels.astype(np.int64), top.astype(np.int64), top_probs.astype(np.float32),
                           true.astype(np.float32))  # fmt: skip
