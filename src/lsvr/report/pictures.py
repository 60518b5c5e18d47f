"""The report's pictures, as PNG/JPEG bytes: the confusion matrix and the reliability diagram drawn by
matplotlib (as `lsvr plot` draws), the top losses' thumbnails by Pillow."""

from __future__ import annotations

import io

import numpy as np

LABELLED = 40  # up to this many classes the matrix carries their names; beyond, the pairs table does
ANNOTATED = 12  # up to this many, each non-empty cell its percent
THUMBNAIL = 80  # px, the longer side: 36 of them as JPEG are ~100 KB whatever the image size


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    _pyplot().close(fig)
    return out.getvalue()


def _plain(name: str) -> str:
    return name.replace("$", r"\$")  # matplotlib reads $...$ as mathtext: a class name is text


def confusion_png(matrix: np.ndarray, names: list[str]) -> bytes:
    """The row-normalised confusion matrix (each true class's images split over the predicted
    classes), on a square-root colour scale so that confusions of a few percent show beside the
    diagonal. Up to LABELLED classes a figure whose axes name them; beyond, the cells alone (a
    pixel each, rows the true classes and columns the predicted ones, in index order)."""
    from matplotlib.colors import PowerNorm

    plt = _pyplot()
    n = len(names)
    support = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)  # (n, n) rows sum to 1
    if n > LABELLED:
        return _cells_png(np.sqrt(shares))
    side = 3.0 + 0.32 * n + 0.06 * max((len(s) for s in names), default=0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    image = ax.imshow(shares, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), interpolation="nearest")
    ax.set_xticks(range(n), [_plain(s) for s in names], rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), [_plain(s) for s in names])
    if n <= ANNOTATED:
        for t, p in zip(*np.nonzero(matrix), strict=True):
            said = f"{100 * shares[t, p]:.0f}" if shares[t, p] >= 0.01 else "<1"
            ax.text(p, t, said, ha="center", va="center", fontsize=9, color="white" if shares[t, p] > 0.45 else "black")
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(f"confusion matrix, row-normalised ({n} classes)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class's images (sqrt scale)")
    return _png(fig)


def _cells_png(values: np.ndarray) -> bytes:
    """(n, n) values in 0..1 as a palette PNG of one pixel per cell (at least 600 px wide, cells
    repeated): matplotlib's axes resample a 1,000-row matrix and lose single off-diagonal cells,
    and a 256-colour PNG of a mostly white matrix is ~100 KB where an RGB figure is several times it."""
    from matplotlib import colormaps
    from PIL import Image

    palette = (colormaps["Blues"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)  # (256, 3)
    image = Image.fromarray(np.rint(values * 255).astype(np.uint8), mode="P")
    image.putpalette(palette.tobytes())
    repeat = max(1, 600 // len(values))
    if repeat > 1:
        image = image.resize((len(values) * repeat,) * 2, Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def reliability_png(bins: list[dict], ece: float | None) -> bytes:
    """Accuracy per confidence bin against the diagonal (perfect calibration), the gap shaded,
    and below it how many images each bin holds."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 5.6), dpi=100, height_ratios=(3, 1), sharex=True,
                                      layout="constrained")  # fmt: skip
    width = 100.0 / len(bins)
    centres = [100.0 * (b["lo"] + b["hi"]) / 2 for b in bins]
    filled = [(c, b) for c, b in zip(centres, bins, strict=True) if b["images"]]
    top.bar([c for c, _ in filled], [b["accuracy"] for _, b in filled], width=width * 0.95, color="#3c78b4",
            label="accuracy")  # fmt: skip
    gaps = [b["confidence"] - b["accuracy"] for _, b in filled]  # above the bar: overconfident; below: under
    top.bar([c for c, _ in filled], gaps, width=width * 0.95, bottom=[b["accuracy"] for _, b in filled],
            color="#e06666", alpha=0.45, label="gap to confidence")  # fmt: skip
    top.plot([0, 100], [0, 100], "k--", lw=1, label="calibrated")
    top.set(ylabel="accuracy (%)", xlim=(0, 100), ylim=(0, 100))
    said = f"ECE {ece:.2f}%" if ece is not None else "no images"
    top.set_title(f"reliability ({len(bins)} bins, {said})")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(centres, [b["images"] for b in bins], width=width * 0.95, color="#888888")
    bottom.set(xlabel="top-1 confidence (%)", ylabel="images")
    bottom.grid(alpha=0.3)
    return _png(fig)


def thumbnail_jpeg(pixels: np.ndarray) -> bytes:
    """An (H, W, C) uint8 image as a JPEG at most THUMBNAIL px on its longer side (smaller ones as
    they are: the page scales them up, pixelated)."""
    from PIL import Image

    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()
