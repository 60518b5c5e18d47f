"""The GPU check's summary (scripts/gpu_check.sh): one line a step, then the totals.

python3 scripts/gpu_summary.py RESULTS

RESULTS holds steps.txt (`name rc seconds` per step) and each step's NAME.out / NAME.log.
Per step: exit status, seconds, and its figures: images/s (model-only, end-to-end, baseline)
and their ratios for a bench, syncs per step, pytest's tally, top-1 of the Fashion-MNIST run.
A bench cut short reports the rounds it printed on stderr as it went (its partial JSON lines).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _bench(results: Path, name: str) -> str:
    record = _json(results / f"{name}.out")
    if record is None:  # cut short: what its rounds printed as they came
        partial: dict[str, float] = {}
        for line in _lines(results / f"{name}.log"):
            if line.startswith('{"partial"'):
                entry = json.loads(line)
                partial[entry["pipeline"]] = entry["images_per_sec"]
        return "partial: " + " ".join(f"{k} {v:,.0f}/s" for k, v in partial.items()) if partial else "no figures"
    ips = record["images_per_sec"]
    text = " ".join(f"{k} {v:,.0f}/s" for k, v in ips.items())
    text += f" e2e/model {record['end_to_end_over_model_only']:.2f}"
    if record.get("end_to_end_over_baseline") is not None:
        text += f" e2e/baseline {record['end_to_end_over_baseline']:.2f}"
    return text + f" mem {record['peak_memory_mb']:,.0f} MB"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _figures(results: Path, name: str) -> str:
    if name == "preflight":
        found = _json(results / "preflight.json") or {}
        steps = found.get("steps") or {}
        software = (found.get("doctor") or {}).get("software", {})
        return (f"torch {software.get('torch', '?')} on {steps.get('device', '?')}:"
                f" {steps.get('images_per_sec_last', '?')} img/s; {found.get('failure') or 'ok'}")  # fmt: skip
    if name == "cuda_tests":
        tally = [line for line in _lines(results / f"{name}.out") if " passed" in line or " failed" in line]
        return tally[-1] if tally else "no tally"
    if name == "syncs":
        found = _json(results / "syncs.json")
        if found and found["device"] == "cpu":
            return "not watched on a CPU (a dry run)"
        if not found:
            return "no figures"
        return f"{found['syncs_per_step']:.2f} syncs/step over {found['steps_watched']} steps"
    if name == "fm256":
        found = _json(results / "fm256_eval.json") or {}
        records = [json.loads(line) for line in _lines(results / "fm256_metrics.jsonl") if line.startswith("{")]
        top1 = [round(r["top1"], 2) for r in records if r.get("kind") == "val" and "top1" in r]
        resumed = sum(r.get("kind") == "start" for r in records) == 2
        ips = [r["images_per_sec"] for r in records if r.get("kind") == "epoch" and "images_per_sec" in r]
        return (f"val top-1 % by epoch {top1}, eval top-1 {found.get('top1', '?')}%, resumed {resumed},"
                f" epoch img/s {ips}")  # fmt: skip
    if name.startswith("prepare"):
        return ""
    return _bench(results, name)


def main(results: str) -> None:
    folder = Path(results)
    steps = [line.split() for line in _lines(folder / "steps.txt") if line.strip()]
    width = max((len(s[0]) for s in steps), default=8)
    print(f"{'step':<{width}}  rc  seconds  figures")
    for name, rc, seconds in steps:
        status = "skip" if rc == "skipped" else rc
        try:
            figures = _figures(folder, name)
        except Exception as exc:  # a summary line never stops the summary
            figures = f"(unreadable: {exc})"
        print(f"{name:<{width}}  {status:>3} {seconds:>7}  {figures}")
    ok = sum(rc == "0" for _, rc, _ in steps)
    total = sum(int(s) for _, _, s in steps)
    print(f"gpu_check: {ok} of {len(steps)} steps passed in {total} s")


if __name__ == "__main__":
    main(sys.argv[1])
