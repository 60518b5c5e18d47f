"""`lsvr eval --report` of a small run, opened in a real browser: Debian's headless chromium driven by
playwright, from file:// with no server. The page loads with no console error, every picture
decodes, the per-class table has a row per class and sorts on a click, and every figure on the
page is report.json's, whose top-1/top-5 are what `lsvr eval` prints.

`make test` installs chromium when it is missing (the Makefile's `chromium` step): without it this
test fails, it does not skip."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from tests.support import cli, train

pytestmark = pytest.mark.slow  # trains a few steps, starts a browser

CHROMIUM = Path("/usr/bin/chromium")
# headless, no sandbox (CI runs as root), nothing fetched behind the page's back
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def run_cli(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli(*args)
    return status, out.getvalue()


def shown(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_data) -> dict:
    """A tiny run (5 steps on the 10-class tiny set), scored by `lsvr eval` alone (--json) and with
    --report (its printed line)."""
    folder = tmp_path_factory.mktemp("report")
    run = folder / "run"
    assert train(run, tiny_data, **{"train.epochs": 1}) == 0
    status, alone = run_cli("eval", run, tiny_data, "--json")
    assert status == 0
    status, printed = run_cli("eval", run, tiny_data, "--report", folder / "report")
    assert status == 0, printed
    return {"alone": json.loads(alone), "printed": printed, "dir": folder / "report", "folder": folder}


def test_the_report_counts_what_eval_prints(scored):
    report = json.loads((scored["dir"] / "report.json").read_text())
    alone = scored["alone"]
    assert (report["top1"], report["top5"], report["images"]) == (alone["top1"], alone["top5"], alone["images"])
    assert report["loss"] == pytest.approx(alone["loss"], rel=1e-6)
    line = re.search(r"top-1 ([\d.]+)%  top-5 ([\d.]+)%", scored["printed"])
    assert line.groups() == (shown(report["top1"]), shown(report["top5"]))
    assert report["about"]["view"]["crop"] == 28 and report["about"]["view"]["resize"] == 32  # debug.yaml's view
    assert sorted(p.name for p in scored["dir"].iterdir()) == ["index.html", "per_class.csv", "report.json"]
    assert report["top_losses"], "5 steps leave wrong predictions: the thumbnails are shown"


def open_page(playwright, profile: Path, index: Path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make test` does, as root with apt-get)")
    context = playwright.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM),
                                                            headless=True, args=CHROMIUM_ARGS)  # fmt: skip
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: None if request.url.startswith(("file:", "data:")) else errors.append(
        f"fetched {request.url}"))  # fmt: skip
    page.goto(index.as_uri(), wait_until="load")
    return context, page, errors


def test_the_page_in_headless_chromium(scored):
    from playwright.sync_api import sync_playwright

    report = json.loads((scored["dir"] / "report.json").read_text())
    with sync_playwright() as playwright:
        context, page, errors = open_page(playwright, scored["folder"] / "profile", scored["dir"] / "index.html")
        try:
            images = page.eval_on_selector_all("img", "all => all.map(i => [i.alt, i.complete, i.naturalWidth])")
            cards = {key: page.text_content(f"#{key}") for key in ("top1", "top5", "loss", "ece", "images")}
            rows = page.eval_on_selector_all(
                "#per-class tbody tr", "all => all.map(r => [r.dataset.index, ...[...r.cells].map(c => c.textContent)])"
            )
            pairs = page.eval_on_selector_all(
                "#pairs tbody tr", "all => all.map(r => [...r.cells].map(c => c.textContent))"
            )
            losses = page.eval_on_selector_all(
                "figure.loss",
                "all => all.map(f => [f.dataset.row, f.querySelector('[data-key=probability]').textContent,"
                " f.querySelector('[data-key=true_probability]').textContent])",
            )
            page.click("#per-class th:first-child")  # sort by index, ascending
            sorted_once = page.eval_on_selector_all("#per-class tbody tr", "all => all.map(r => r.dataset.index)")
            page.click("#per-class th:first-child")
            sorted_twice = page.eval_on_selector_all("#per-class tbody tr", "all => all.map(r => r.dataset.index)")
        finally:
            context.close()
    assert not errors, errors
    # the confusion matrix, the reliability diagram and one thumbnail per top loss, all decoded
    assert len(images) == 2 + len(report["top_losses"])
    assert all(complete and width > 0 for _, complete, width in images), images
    assert cards == {"top1": shown(report["top1"]), "top5": shown(report["top5"]), "loss": shown(report["loss"], 4),
                     "ece": shown(report["ece"]), "images": str(report["images"])}  # fmt: skip
    assert len(rows) == len(report["classes"]) == 10
    by_index = {r["index"]: r for r in report["per_class"]}
    for index, _, name, images_, predicted, precision, recall, top5 in rows:
        expected = by_index[int(index)]
        assert (name, int(images_), int(predicted)) == (expected["class"], expected["images"], expected["predicted"])
        assert (precision, recall, top5) == tuple(shown(expected[k]) for k in ("precision", "recall", "top5"))
    assert pairs == [[p["true"], p["predicted"], str(p["images"]), shown(p["share"])] for p in report["confused_pairs"]]
    assert losses == [[str(x["row"]), shown(x["probability"], 1), shown(x["true_probability"], 1)]
                      for x in report["top_losses"]]  # fmt: skip
    assert sorted_once == [str(i) for i in range(10)] and sorted_twice == sorted_once[::-1]
