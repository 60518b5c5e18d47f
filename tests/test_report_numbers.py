"""`lsvr eval --report`'s numbers against a hand count, and its folder: a user's files refused,
an earlier report replaced, a write cut short never leaving a page (lsvr.report)."""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import math

import numpy as np
import pytest
import torch
from tests.support import cli, one_line

from lsvr.errors import InputError
from lsvr.report import folder as report_folder
from lsvr.report.build import report_files
from lsvr.report.collect import Collector
from lsvr.report.folder import check_report_folder, write_report_files
from lsvr.report.numbers import Predictions, summarize

NAMES = ["cat", "dog", "fish"]
LABELS = np.array([0, 0, 1, 1, 2, 2])
# each image's probabilities, chosen so that no confidence falls on a bin edge (multiples of 1/15)
PROBS = np.array([
    [0.52, 0.28, 0.20],  # cat,  right, confidence 0.52
    [0.20, 0.50, 0.30],  # cat as dog, 0.50
    [0.10, 0.78, 0.12],  # dog,  right, 0.78
    [0.62, 0.30, 0.08],  # dog as cat, 0.62
    [0.05, 0.05, 0.90],  # fish, right, 0.90
    [0.10, 0.55, 0.35],  # fish as dog, 0.55
])  # fmt: skip
LOGITS = np.log(PROBS) + 3.0  # softmax gives PROBS back: what a model's head would hand evaluate


def hand_case() -> Predictions:
    return Predictions.from_probs(torch.softmax(torch.tensor(LOGITS, dtype=torch.float32), dim=1).numpy(), LABELS)


def test_numbers_equal_a_hand_count():
    report = summarize(hand_case(), NAMES)
    assert report["images"] == 6
    assert report["top1"] == pytest.approx(100 * 3 / 6)
    assert report["top5"] == 100.0  # 3 classes: every true class is among the top 3
    assert report["loss"] == pytest.approx(-np.mean(np.log([0.52, 0.20, 0.78, 0.30, 0.90, 0.35])), rel=1e-6)
    # rows true, columns predicted: cat [1 cat, 1 dog], dog [1 cat, 1 dog], fish [1 dog, 1 fish]
    cells = {(t, p): n for t, p, n in report["confusion"]}
    assert cells == {(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 1, (2, 1): 1, (2, 2): 1}
    rows = {r["class"]: r for r in report["per_class"]}
    # precision: right / predicted as the class (cat 1/2, dog 1/3, fish 1/1); recall: right / images (1/2 each)
    assert [rows[c]["predicted"] for c in NAMES] == [2, 3, 1]
    assert [rows[c]["precision"] for c in NAMES] == pytest.approx([50.0, 100 / 3, 100.0])
    assert [rows[c]["recall"] for c in NAMES] == pytest.approx([50.0, 50.0, 50.0])
    assert [rows[c]["images"] for c in NAMES] == [2, 2, 2]
    # ECE over 15 bins: 0.52 (right) and 0.50 (wrong) share bin 7 (accuracy 0.5, confidence 0.51);
    # the others are alone in theirs: |1 - 0.78|, |0 - 0.62|, |1 - 0.90|, |0 - 0.55|
    ece = (2 * abs(0.5 - 0.51) + abs(1 - 0.78) + abs(0 - 0.62) + abs(1 - 0.90) + abs(0 - 0.55)) / 6
    assert report["ece"] == pytest.approx(100 * ece, rel=1e-5)
    shared = report["reliability"][7]
    assert shared["images"] == 2 and shared["accuracy"] == 50.0 and shared["confidence"] == pytest.approx(51.0)
    assert sum(b["images"] for b in report["reliability"]) == 6
    # the wrong ones, the lowest probability of the true class first: 0.20, 0.30, 0.35
    losses = report["top_losses"]
    assert [(x["row"], x["true"], x["predicted"]) for x in losses] == [(1, "cat", "dog"), (3, "dog", "cat"),
                                                                       (5, "fish", "dog")]  # fmt: skip
    assert losses[0]["probability"] == pytest.approx(50.0) and losses[0]["true_probability"] == pytest.approx(20.0)
    assert losses[0]["loss"] == pytest.approx(-math.log(0.2), rel=1e-6)
    pairs = [(p["true"], p["predicted"], p["images"], p["share"]) for p in report["confused_pairs"]]
    assert pairs == [("cat", "dog", 1, 50.0), ("dog", "cat", 1, 50.0), ("fish", "dog", 1, 50.0)]


def test_top5_and_a_class_never_predicted():
    """Six classes: an image whose true class ranks sixth misses the top-5; a class no image is
    predicted as has no precision (None, not 0)."""
    probs = np.array([[0.30, 0.25, 0.20, 0.15, 0.06, 0.04],  # true 5: sixth
                      [0.50, 0.10, 0.10, 0.10, 0.10, 0.10],  # true 0: right
                      [0.10, 0.40, 0.20, 0.10, 0.10, 0.10]])  # true 2: second  # fmt: skip
    report = summarize(Predictions.from_probs(probs, np.array([5, 0, 2])), [f"c{i}" for i in range(6)])
    assert report["top1"] == pytest.approx(100 / 3) and report["top5"] == pytest.approx(200 / 3)
    rows = report["per_class"]
    assert rows[5]["top5"] == 0.0 and rows[2]["top5"] == 100.0 and rows[5]["precision"] is None
    assert rows[3]["recall"] is None and rows[3]["images"] == 0


def test_the_collector_keeps_what_evaluate_scores():
    """Batches handed to the Collector as evaluate hands them give the numbers of the whole."""
    collector = Collector()
    probs = torch.softmax(torch.tensor(LOGITS, dtype=torch.float32), dim=1)
    for part in (slice(0, 4), slice(4, 6)):
        collector(probs[part], torch.tensor(LABELS[part]))
    assert summarize(collector.predictions(), NAMES) == summarize(hand_case(), NAMES)


def about() -> dict:
    return {"checkpoint": "run/step.pt", "dataset": "set", "view": {"description": "the centre crop (28 px of 32)"}}


@functools.cache  # drawing the pictures takes a second or two: once for the module
def files() -> dict:
    return report_files(hand_case(), NAMES, about=about(), image=lambda row: np.full((28, 28, 1), row, np.uint8))


def test_the_three_files_agree():
    made = files()
    report = json.loads(made["report.json"])
    table = list(csv.DictReader(io.StringIO(made["per_class.csv"].decode())))
    assert [r["class"] for r in table] == NAMES and table[1]["precision"] == str(100 / 3)
    page = made["index.html"].decode()
    assert page.count('class="loss"') == 3 and page.count("data:image/jpeg;base64,") == 3
    assert 'id="top1">50.00<' in page and "https://" not in page and "http://" not in page
    assert report["about"]["view"]["description"] in page and report["generator"] == "lsvr eval --report"


def test_a_folder_of_other_files_is_refused_untouched(tmp_path, capsys):
    """Exit 2, one line, before the checkpoint is even looked at; the user's file as it was."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "index.html").write_text("<html>my own page</html>")
    assert cli("eval", tmp_path / "no-such.pt", tmp_path / "no-set", "--report", out) == 2
    one_line(capsys, str(out), "index.html", "no report wrote")
    assert [p.name for p in out.iterdir()] == ["index.html"]
    assert (out / "index.html").read_text() == "<html>my own page</html>"
    (out / "index.html").unlink()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"notes\.txt"):
        check_report_folder(out)
    (out / "notes.txt").unlink()
    (out / "sub").mkdir()
    with pytest.raises(InputError, match="sub"):
        check_report_folder(out)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_report_folder(tmp_path / "file.txt")


def test_an_earlier_report_is_replaced_and_a_cut_write_leaves_no_page(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report_files(out, files())
    check_report_folder(out)  # an earlier report's folder is taken again
    write_report_files(out, files())
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "per_class.csv", "report.json"]

    real = report_folder.write_atomic

    def killed_at_the_page(path, data, **kw):
        if path.name == "index.html":  # as a kill between the numbers and the page would
            path.with_name(".index.html.tmp").write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt
        real(path, data, **kw)

    monkeypatch.setattr(report_folder, "write_atomic", killed_at_the_page)
    with pytest.raises(KeyboardInterrupt):
        write_report_files(out, files())
    assert not (out / "index.html").exists()  # no half page, and not the old page beside new numbers
    monkeypatch.setattr(report_folder, "write_atomic", real)
    write_report_files(out, files())  # the cut write's leftovers are a report's: taken again
    assert (out / "index.html").read_text().rstrip().endswith("</html>")
    assert not (out / ".index.html.tmp").exists()


def test_a_thousand_classes_stay_small():
    """1,000 classes: the matrix a picture of one pixel per cell (a lone stray cell shows), the page
    and its numbers a few MB at most, whatever the set's size (here 3,000 images, every one wrong
    somewhere: the sparse confusion list grows with the images, at most one cell each)."""
    from PIL import Image

    classes, n = 1000, 3000
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    probs = rng.dirichlet(np.full(classes, 0.05), n).astype(np.float32)  # (n, classes), rows sum to 1
    pred = Predictions.from_probs(probs, labels)
    made = report_files(pred, [f"class {i}" for i in range(classes)], about=about(),
                        image=lambda row: rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))  # fmt: skip
    page = made["index.html"].decode()
    png = base64.b64decode(page.split('id="confusion" alt="confusion matrix"\n src="data:image/png;base64,')[1]
                           .split('"')[0])  # fmt: skip
    picture = Image.open(io.BytesIO(png))
    assert picture.size == (classes, classes)
    drawn = np.argwhere(np.asarray(picture) > 0)  # (cells, 2): the palette's index 0 is white
    cells = [[t, p] for t, p, _ in json.loads(made["report.json"])["confusion"]]
    assert drawn.tolist() == cells  # every non-empty cell, a lone stray image's too, and no other
    assert len(made["index.html"]) < 1_500_000 and sum(len(v) for v in made.values()) < 3_000_000
    assert page.count("<tr data-index=") == classes
