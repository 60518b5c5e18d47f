"""A resume supersedes what a killed attempt logged past its checkpoint: the continued run
writes a `resume` record, and every reader (read_metrics: plot, info, time to accuracy;
TensorBoard through purge_step) shows the curve of a run that was never stopped."""

import json

import pytest
from tests.support import train

from lsvr.runs.metrics import read_metrics


def test_a_resume_record_drops_the_earlier_attempts_records_past_its_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"kind": "start"}, *({"kind": "train", "step": s, "loss": 1.0} for s in (1, 2, 3)),
             {"kind": "val", "step": 3, "top1": 10.0}, {"kind": "start"}, {"kind": "resume", "step": 2},
             {"kind": "train", "step": 3, "loss": 0.5}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    kept = read_metrics(path)
    assert [(r["kind"], r.get("step"), r.get("loss")) for r in kept if r["kind"] in ("train", "val")] == [
        ("train", 1, 1.0), ("train", 2, 1.0), ("train", 3, 0.5)]  # fmt: skip
    assert len(read_metrics(path, superseded=True)) == len(lines)


@pytest.mark.slow
def test_a_killed_attempts_records_past_the_checkpoint_are_not_shown_twice(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, extra = tmp_path / "run", {"checkpoint.every_steps": 4, "train.global_batch": 16, "train.tensorboard": "true"}
    assert train(out, tiny_data, **{"train.max_steps": 6, **extra}) == 0
    # A kill -9 at step 6 (before its save) leaves the records of steps 5 and 6 past the checkpoint of step 4.
    (out / "checkpoints" / "step-00000006.pt").unlink()
    (out / "checkpoints" / "latest").write_text("step-00000004.pt\n")
    written = read_metrics(out / "metrics.jsonl", superseded=True)
    for record in written:  # the killed attempt's figures are not the ones the resume computes again
        if record["kind"] == "train" and record["step"] > 4:
            record["loss"] += 1.0
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in written))

    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 8, **extra}) == 0
    every = [r["step"] for r in read_metrics(out / "metrics.jsonl", superseded=True) if r["kind"] == "train"]
    assert every == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8]  # the file keeps what was written
    train_records = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == list(range(1, 9))
    assert all(r["loss"] < 3 for r in train_records)  # the resumed attempt's losses at steps 5 and 6

    board = EventAccumulator(str(out / "tb"))
    board.Reload()
    losses = board.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, 9))
    assert all(e.value < 3 for e in losses)
