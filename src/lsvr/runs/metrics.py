"""metrics.jsonl read: the records of a run as an unbroken run would have written them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESUME = "resume"  # the record a continued run writes at its start: {"kind": "resume", "step": N}


def read_metrics(path: Path, *, superseded: bool = False) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl as an unbroken run would have written them: a `resume`
    record (step N) drops the records before it that are past step N, those a killed attempt
    wrote after the checkpoint the run continued from (it trains those steps again, with other
    figures). superseded=True: every record, as written. A line that is not one JSON object (a
    torn last line of a killed run, bytes that are not UTF-8, a foreign `[1, 2]`) is skipped:
    readers index records by key, and one stray line must not hide the rest of a run."""
    records = []
    for raw in path.read_bytes().splitlines():
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(record, dict):
            continue
        if record.get("kind") == RESUME and _number(record.get("step")) and not superseded:
            records = [r for r in records if not (_number(r.get("step")) and r["step"] > record["step"])]
        records.append(record)
    return records


def complete(records: list[dict[str, Any]], kind: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of one kind that hold a number at every key a reader indexes."""
    return [r for r in records if r.get("kind") == kind and all(_number(r.get(k)) for k in keys)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def time_to_accuracy(records: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Seconds from a run's first start to its first validation at >= target top-1, with the epoch
    and the final and best top-1. None where the target was never reached. The start is the
    process's (the first `start` record's process_start, data loading included), or that
    record's own time where an older lsvr wrote no process_start."""
    starts = [r.get("process_start") if _number(r.get("process_start")) else r["time"]
              for r in complete(records, "start", ("time",))]  # fmt: skip
    val = complete(records, "val", ("time", "epoch", "top1"))
    hit = next((r for r in val if r["top1"] >= target), None)
    return {
        "target": target,
        "seconds": round(hit["time"] - starts[0], 1) if hit and starts else None,
        "epoch": hit["epoch"] if hit else None,
        "final_top1": val[-1]["top1"] if val else None,
        "best_top1": max((r["top1"] for r in val), default=None),
        "total_seconds": round(val[-1]["time"] - starts[0], 1) if val and starts else None,
    }
