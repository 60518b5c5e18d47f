"""The report's numbers, from each image's predictions: top-1/top-5, the confusion matrix, per-class
precision and recall, the most confused pairs, the top losses, and the reliability bins with the
expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3:
equal-width confidence bins, each bin's |accuracy - mean confidence| weighted by its share).

Accuracies, shares and the ECE are percents, as `lsvr eval` prints top-1. A per-class figure with
no image to count over (precision of a class never predicted) is None, not 0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RELIABILITY_BINS = 15  # Guo et al.'s M
CONFUSED_PAIRS = 20  # rows of the most-confused table
TOP_LOSSES = 36  # thumbnails: 36 JPEGs of ~80 px keep a 1,000-class page at a few MB


@dataclass
class Predictions:
    """Each scored image's label and most likely classes: all the report reads, a few numbers per
    image where the full (N, classes) probabilities of ImageNet's val set would be 200 MB."""

    labels: np.ndarray  # (N,) int64, the true classes
    top: np.ndarray  # (N, k) int64, the k most likely classes, most likely first (k = min(5, classes))
    top_probs: np.ndarray  # (N, k) float32, their probabilities
    true_probs: np.ndarray  # (N,) float32, the probability of the true class

    @classmethod
    def from_probs(cls, probs: np.ndarray, labels: np.ndarray) -> Predictions:
        """From (N, classes) probabilities: what `lsvr eval` keeps of each batch (report/collect.py)."""
        import torch

        probs_t, labels_t = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)
        values, indices = probs_t.topk(min(5, probs_t.shape[1]), dim=1)  # the ranking lsvr.evaluate counts
        true = probs_t.gather(1, labels_t[:, None])[:, 0]
        return cls(labels_t.numpy(), indices.numpy(), values.numpy(), true.numpy())

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def predicted(self) -> np.ndarray:
        return self.top[:, 0]

    @property
    def confidence(self) -> np.ndarray:
        return self.top_probs[:, 0]


def percent(count: float, total: float) -> float | None:
    return 100.0 * float(count) / float(total) if total else None


def confusion(pred: Predictions, classes: int) -> np.ndarray:
    """(classes, classes) int64 counts: row = true class, column = predicted (top-1) class."""
    cells = np.bincount(pred.labels * classes + pred.predicted, minlength=classes * classes)
    return cells.reshape(classes, classes)


def per_class(pred: Predictions, matrix: np.ndarray, names: list[str]) -> list[dict]:
    """Per class: images (its support), predicted (how often it is the top-1), precision, recall
    (its top-1 accuracy: the share of its images predicted as it) and top5 (its top-5 accuracy)."""
    correct = np.diag(matrix)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    top5_hits = np.bincount(pred.labels, weights=(pred.top == pred.labels[:, None]).any(axis=1), minlength=len(names))
    rows = []
    for c, name in enumerate(names):
        rows.append({
            "index": c, "class": name, "images": int(support[c]), "predicted": int(predicted[c]),
            "correct": int(correct[c]), "precision": percent(correct[c], predicted[c]),
            "recall": percent(correct[c], support[c]), "top5": percent(top5_hits[c], support[c]),
        })  # fmt: skip
    return rows


def confused_pairs(matrix: np.ndarray, names: list[str], *, count: int = CONFUSED_PAIRS) -> list[dict]:
    """The off-diagonal cells with the most images, most first (ties: lower true, then predicted
    index first): true class, predicted class, images, and their share of the true class."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.flatnonzero(off)
    order = flat[np.lexsort((flat, -off.flat[flat]))][:count]
    support = matrix.sum(axis=1)
    rows = []
    for cell in order.tolist():
        t, p = divmod(cell, matrix.shape[1])
        rows.append({"true": names[t], "predicted": names[p], "true_index": t, "predicted_index": p,
                     "images": int(off[t, p]), "share": percent(off[t, p], support[t])})  # fmt: skip
    return rows


def top_losses(pred: Predictions, names: list[str], *, count: int = TOP_LOSSES) -> list[dict]:
    """The `count` images the model got most confidently wrong: wrong at top-1, by loss (the NLL of
    the true class) from the highest. row: the image's row in the prepared set."""
    wrong = np.flatnonzero(pred.predicted != pred.labels)
    loss = -np.log(np.clip(pred.true_probs[wrong].astype(np.float64), 1e-12, None))
    order = wrong[np.lexsort((wrong, -loss))][:count]  # ties: the earlier row first
    return [{"row": int(i), "true": names[pred.labels[i]], "predicted": names[pred.predicted[i]],
             "probability": 100.0 * float(pred.confidence[i]), "true_probability": 100.0 * float(pred.true_probs[i]),
             "loss": float(-np.log(max(float(pred.true_probs[i]), 1e-12)))}
            for i in order.tolist()]  # fmt: skip


def reliability(pred: Predictions, *, bins: int = RELIABILITY_BINS) -> tuple[list[dict], float | None]:
    """Equal-width bins of top-1 confidence, (lo, hi] (the first takes 0 too), each with its images,
    mean confidence and accuracy (percents); and the ECE: sum over bins of |accuracy - confidence|
    weighted by the bin's share of the images (a percent; None for no images)."""
    confidence = pred.confidence.astype(np.float64)
    hit = (pred.predicted == pred.labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=hit, minlength=bins)
    rows, gap = [], 0.0
    for b in range(bins):
        n = int(counts[b])
        conf = 100.0 * float(conf_sum[b]) / n if n else None
        acc = 100.0 * float(hit_sum[b]) / n if n else None
        if n:
            gap += n * abs(acc - conf)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "images": n, "confidence": conf, "accuracy": acc})
    return rows, (float(gap) / len(pred) if len(pred) else None)


def summarize(pred: Predictions, names: list[str]) -> dict:
    """Every number of the report (report.json's body, without the run's description)."""
    n = len(pred)
    hits = pred.top == pred.labels[:, None]  # (N, k)
    matrix = confusion(pred, len(names))
    bins, ece = reliability(pred)
    loss = -np.log(np.clip(pred.true_probs.astype(np.float64), 1e-12, None)).sum()
    nonzero = np.argwhere(matrix)  # (cells, 2): true, predicted
    return {
        "images": n,
        # as lsvr.evaluate counts them: 100 x hits / images
        "top1": 100.0 * float(hits[:, 0].sum()) / max(1.0, n),
        "top5": 100.0 * float(hits.any(axis=1).sum()) / max(1.0, n),
        "loss": float(loss) / max(1.0, n),
        "ece": ece,
        "reliability": bins,
        "per_class": per_class(pred, matrix, names),
        "confused_pairs": confused_pairs(matrix, names),
        "top_losses": top_losses(pred, names),
        # sparse: a 1,000-class matrix is a million cells, most of them 0
        "confusion": [[int(t), int(p), int(matrix[t, p])] for t, p in nonzero.tolist()],
    }
