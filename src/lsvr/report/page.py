"""index.html: one self-contained page (pictures as data: URIs, a few lines of inline script to sort
the per-class table) that opens from disk with no server; its Content-Security-Policy forbids any
fetch, so nothing on it can come from the network. Every figure on it is report.json's, rounded."""

from __future__ import annotations

import base64
import html

from lsvr.report.pictures import LABELLED

GENERATOR = "lsvr eval --report"  # the page's and report.json's mark: what a later report may replace
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.about { color: #666; word-break: break-all; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; } .card span.label { color: #666; font-size: 12px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 3px 9px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child, td.name, th.name { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
th[data-order=asc]::after { content: " \\25B2"; } th[data-order=desc]::after { content: " \\25BC"; }
.scroll { max-height: 520px; max-width: 100%; overflow: auto; display: inline-block; border: 1px solid #eee; }
td.name { white-space: nowrap; }
.scroll thead th { position: sticky; top: 0; background: #fafafa; }
img.figure { max-width: 100%; height: auto; }
img.cells { width: 100%; max-width: 1000px; image-rendering: pixelated; border: 1px solid #888; }
.losses { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 10px; }
.losses figure { margin: 0; font-size: 12px; border: 1px solid #eee; border-radius: 4px; padding: 6px; }
.losses img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; display: block;
  margin: 0 auto 4px; background: #f4f4f4; }
.wrong { color: #b00; }
.side { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
.side > div { flex: 2 1 360px; min-width: 0; } .side > div:first-child { flex: 3 1 480px; }
.side h3 { margin-top: 0; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const asc = th.dataset.order !== "asc";
    table.querySelectorAll("th").forEach((h) => delete h.dataset.order);
    th.dataset.order = asc ? "asc" : "desc";
    const key = (row) => {
      const cell = row.cells[col];
      return cell.dataset.value !== undefined ? Number(cell.dataset.value) : cell.textContent;
    };
    const rows = [...table.tBodies[0].rows].sort((a, b) => {
      const x = key(a), y = key(b);
      const d = typeof x === "number" ? x - y : x.localeCompare(y);
      return asc ? d : -d;
    });
    table.tBodies[0].append(...rows);
  }));
});
"""


CELLS_NOTE = """<p>Rows: the true classes, columns: the predicted ones, both in index order (the
per-class table's); each row split over the predicted classes, white 0 to dark blue 100% on a
square-root scale, so that confusions of a few percent show.</p>"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def number(value: float | None, digits: int = 2) -> str:
    """How the page writes a report.json figure (None: an en dash)."""
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(value: float | None, digits: int = 2, key: str = "") -> str:
    sort = -1 if value is None else value  # no figure sorts below 0
    return f'<td data-key="{key}" data-value="{sort!r}">{number(value, digits)}</td>'


def _card(label: str, ident: str, value: float | None, *, digits: int = 2, unit: str = "%") -> str:
    shown = f'<b><span id="{ident}">{number(value, digits)}</span>{unit if value is not None else ""}</b>'
    return f'<div class="card">{shown}<span class="label">{label}</span></div>'


def _view_table(view: dict) -> str:
    """The view as one row (and the checkpoint's record below it where a flag changed a value)."""
    record = view.get("record", {})
    keys = (("resize", "resized to (px)"), ("crop", "centre crop (px)"), ("crops", "crops"), ("flip", "mirror"),
            ("shift", "shift (px)"), ("interpolation", "interpolation"), ("normalize", "normalisation"))  # fmt: skip
    head = "".join(f"<th>{label}</th>" for _, label in keys)
    used = "".join(f'<td id="view-{key}">{html.escape(str(view.get(key)))}</td>' for key, _ in keys)
    rows = f"<tr><td class=name>used</td>{used}</tr>"
    if any(key in record and record[key] != view.get(key) for key, _ in keys):
        said = "".join(f"<td>{html.escape(str(record.get(key, '')))}</td>" for key, _ in keys)
        rows += f"<tr><td class=name>the checkpoint's record</td>{said}</tr>"
    return f'<table id="view"><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _per_class_rows(rows: list[dict]) -> str:
    # listed worst recall first: where the model fails is what the reader came for
    ordered = sorted(rows, key=lambda r: (-1 if r["recall"] is None else r["recall"], r["index"]))
    return "\n".join(
        f'<tr data-index="{r["index"]}"><td data-value="{r["index"]}">{r["index"]}</td>'
        f'<td class="name">{html.escape(r["class"])}</td>'
        f'<td data-key="images" data-value="{r["images"]}">{r["images"]}</td>'
        f'<td data-key="predicted" data-value="{r["predicted"]}">{r["predicted"]}</td>'
        f"{_cell(r['precision'], key='precision')}{_cell(r['recall'], key='recall')}{_cell(r['top5'], key='top5')}</tr>"
        for r in ordered
    )


def _pair_rows(pairs: list[dict]) -> str:
    return "\n".join(
        f'<tr><td class="name">{html.escape(p["true"])}</td><td class="name">{html.escape(p["predicted"])}</td>'
        f'<td data-key="images" data-value="{p["images"]}">{p["images"]}</td>{_cell(p["share"], key="share")}</tr>'
        for p in pairs
    )


def _loss_figures(losses: list[dict], thumbnails: dict[int, bytes]) -> str:
    figures = []
    for item in losses:
        jpeg = thumbnails.get(item["row"])
        picture = f'<img alt="row {item["row"]}" src="{data_uri(jpeg, "image/jpeg")}">' if jpeg else ""
        figures.append(
            f'<figure class="loss" data-row="{item["row"]}">{picture}<figcaption>'
            f"true <b>{html.escape(item['true'])}</b><br>"
            f'<span class="wrong">predicted {html.escape(item["predicted"])}</span> '
            f'<span data-key="probability">{number(item["probability"], 1)}</span>%<br>'
            f'true class <span data-key="true_probability">{number(item["true_probability"], 1)}</span>%'
            f" · row {item['row']}</figcaption></figure>"
        )
    return "\n".join(figures)


def render(report: dict, *, confusion_png: bytes, reliability_png: bytes, thumbnails: dict[int, bytes]) -> str:
    """The page of a report (report.json's dict), its pictures and the top losses' thumbnails
    (row -> JPEG; a row without one shows its caption alone)."""
    about = report["about"]
    esc = html.escape
    pairs = report["confused_pairs"]
    pairs_part = (
        f'<table id="pairs"><thead><tr><th class="name">true class</th><th class="name">predicted as</th>'
        f"<th>images</th><th>share of the true class (%)</th></tr></thead><tbody>\n{_pair_rows(pairs)}\n"
        "</tbody></table>"
        if pairs
        else "<p>No image was confused with another class.</p>"
    )
    losses = report["top_losses"]
    losses_part = (
        f'<div class="losses" id="losses">\n{_loss_figures(losses, thumbnails)}\n</div>'
        if losses
        else "<p>No image was predicted wrong.</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lsvr eval report: {esc(about["checkpoint"])}</title>
<style>{STYLE}</style></head>
<body>
<h1>Evaluation report</h1>
<p class="about">checkpoint {esc(about["checkpoint"])}<br>set {esc(about["dataset"])}<br>
{report["images"]} images, {len(report["classes"])} classes · {esc(about["view"]["description"])} ·
lsvr {esc(about["lsvr"])} · {esc(about["made"])}</p>
<div class="cards">
{_card("top-1 accuracy", "top1", report["top1"])}
{_card("top-5 accuracy", "top5", report["top5"])}
{_card("loss (mean NLL)", "loss", report["loss"], digits=4, unit="")}
{_card("expected calibration error", "ece", report["ece"])}
<div class="card"><b id="images">{report["images"]}</b><span class="label">images</span></div>
</div>

<h2>Evaluation view</h2>
<p>{esc(about["view"]["description"])}, as the checkpoint's record says unless a flag of
<code>lsvr eval</code> changed it:</p>
{_view_table(about["view"])}

<h2>Confusion matrix</h2>
<div class="{"side" if len(report["classes"]) <= LABELLED else "stack"}"><div>
<img class="figure{"" if len(report["classes"]) <= LABELLED else " cells"}" id="confusion" alt="confusion matrix"
 src="{data_uri(confusion_png, "image/png")}">{"" if len(report["classes"]) <= LABELLED else CELLS_NOTE}
</div><div>
<h3>Most confused pairs</h3>
{pairs_part}
</div></div>

<h2>Top losses</h2>
<p>The {len(losses)} images predicted wrong with the highest loss (lowest probability of the true class),
as stored in the prepared set.</p>
{losses_part}

<div class="side"><div>
<h2>Per class</h2>
<p>Click a column to sort. Recall is the class's top-1 accuracy; top-5 its top-5 accuracy; precision
the share of the images predicted as the class that are of it. Also in per_class.csv.</p>
<div class="scroll"><table class="sortable" id="per-class"><thead><tr><th>index</th><th class="name">class</th>
<th>images</th><th>predicted</th><th>precision (%)</th><th data-order="asc">recall (%)</th><th>top-5 (%)</th>
</tr></thead><tbody>
{_per_class_rows(report["per_class"])}
</tbody></table></div>
</div><div>
<h2>Calibration</h2>
<p>Expected calibration error (Guo et al. 2017, {len(report["reliability"])} equal-width bins of top-1
confidence): <span id="ece-text">{number(report["ece"])}</span>%.</p>
<img class="figure" id="reliability" alt="reliability diagram" src="{data_uri(reliability_png, "image/png")}">
</div></div>


<p class="about">All the numbers: report.json and per_class.csv beside this page.</p>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
