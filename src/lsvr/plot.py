"""`lsvr plot RUN`: the training loss and the validation error curves as one PNG."""

from __future__ import annotations

from pathlib import Path

from lsvr.errors import InputError
from lsvr.train.metrics import read_metrics


def plot_run(run: Path, out: Path | None = None) -> Path:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise InputError(f"{run}: no metrics.jsonl (not a run folder)")
    records = read_metrics(path)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    if not train and not val:
        raise InputError(f"{path}: no metrics yet")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss (objective)")
    if val:
        left.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="val loss (NLL)")
        right.plot([r["epoch"] for r in val], [100 - r["top1"] for r in val], "o-", label="top-1 error")
        right.plot([r["epoch"] for r in val], [100 - r["top5"] for r in val], "s-", label="top-5 error")
    left.set(xlabel="step", ylabel="loss", title="loss")
    right.set(xlabel="epoch", ylabel="error (%)", title="validation error")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(str(run))
    fig.tight_layout()
    out = out or run / "plot.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
