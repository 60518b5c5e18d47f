"""`lsvr plot RUN`: the training loss and the validation error curves as one PNG."""

from __future__ import annotations

from pathlib import Path

from lsvr.errors import InputError
from lsvr.runs.metrics import complete, read_metrics


def image_formats() -> list[str]:
    """The suffixes (lower case, no dot) of the formats matplotlib writes: what --out may end in."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(FigureCanvasAgg.get_supported_filetypes())


def check_out(out: Path) -> None:
    """Refuse an --out whose suffix names no format matplotlib writes, before any plotting
    (savefig raised `Format 'json' is not supported`; with no suffix it writes OUT.png,
    not the path printed)."""
    formats = image_formats()
    if out.suffix.lower().lstrip(".") not in formats:
        reason = f"'{out.suffix}' is not an image format" if out.suffix else "no suffix to name the image format"
        raise InputError(f"--out {out}: {reason}; use one of {', '.join(formats)}")


def plot_run(run: Path, out: Path | None = None) -> Path:
    out = out or run / "plot.png"
    check_out(out)
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise InputError(f"{run}: no metrics.jsonl (not a run folder)")
    records = read_metrics(path)
    train = complete(records, "train", ("step", "loss"))
    val = complete(records, "val", ("step", "epoch", "loss", "top1", "top5"))
    if not train and not val:
        raise InputError(f"{path}: no metrics yet")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    # A line needs two points: a run of one logged step is drawn as markers, not as nothing.
    style = "o-" if len(train) < 2 else "-"
    if train:
        left.plot([r["step"] for r in train], [r["loss"] for r in train], style, label="train loss (objective)")
    if val:
        left.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="val loss (NLL)")
        right.plot([r["epoch"] for r in val], [100 - r["top1"] for r in val], "o-", label="top-1 error")
        right.plot([r["epoch"] for r in val], [100 - r["top5"] for r in val], "s-", label="top-5 error")
    else:
        right.text(0.5, 0.5, "no validation (data.val is null)", ha="center", va="center", transform=right.transAxes)
    left.set(xlabel="step", ylabel="loss", title="loss")
    right.set(xlabel="epoch", ylabel="error (%)", title="validation error")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_lines():  # a legend of no lines is matplotlib's "No artists" warning
            ax.legend()
    fig.suptitle(str(run))
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise InputError(f"{out}: the plot cannot be written ({exc.strerror or exc})") from None
    plt.close(fig)
    return out
