"""What `lsvr train --out RUN` may write into: never a user's folder, never another run's
checkpoint continued, and nothing at all when the start is refused."""

import errno
import shutil
from pathlib import Path

import pytest
from tests.support import files, start_ids, train

from lsvr.errors import InputError
from lsvr.runs import checkpoints


@pytest.fixture(scope="module")
def run1(tiny_data, tmp_path_factory) -> Path:
    """A run of 4 steps: step-2 and step-4 saved."""
    out = tmp_path_factory.mktemp("owner") / "run1"
    assert train(out, tiny_data, **{"train.max_steps": 4}) == 0
    return out


def test_resume_auto_with_no_checkpoint_that_loads_is_refused_naming_them(run1, tiny_data, tmp_path, capsys):
    out = tmp_path / "t2"
    shutil.copytree(run1, out)
    with open(out / "checkpoints" / "step-00000004.pt", "r+b") as f:
        f.truncate(1000)
    (out / "checkpoints" / "step-00000002.pt").write_bytes(b"")
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 6}) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"lsvr train: error: {out}: holds checkpoints but none of them can be resumed from"), err
    assert "step-00000004.pt" in err and "step-00000002.pt" in err
    assert files(out) == before  # no new run, no start line, no config.yaml rewrite
    fresh = tmp_path / "fresh"  # nothing saved yet: --resume auto starts the run
    assert train(fresh, tiny_data, "--resume", "auto", **{"train.max_steps": 2}) == 0
    assert len(start_ids(fresh)) == 1 and checkpoints.find_valid(fresh).name == "step-00000002.pt"


def user_folder(tmp_path: Path, kind: str, tiny_data: Path) -> tuple[Path, str]:
    out = tmp_path / "u2"
    if kind == "prepared":
        return tiny_data, "it holds"
    out.mkdir()
    if kind == "user config and metrics":
        (out / "config.yaml").write_text("mine\n")
        (out / "metrics.jsonl").write_text("mine\n")
        return out, "its config.yaml is not an lsvr config"
    if kind == "metrics without kind":
        (out / "metrics.jsonl").write_text('{"loss": 1.0}\n')
        return out, "line 1 of its metrics.jsonl is not an lsvr record"
    (out / "notes.txt").write_text("mine\n")
    return out, "it holds notes.txt, which lsvr does not write there"


@pytest.mark.parametrize("kind", ["user config and metrics", "metrics without kind", "other file", "prepared"])
def test_an_out_holding_files_lsvr_does_not_write_is_refused(kind, tiny_data, tmp_path, capsys):
    out, reason = user_folder(tmp_path, kind, tiny_data)
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"lsvr train: error: {out}: not a run folder ("), err
    assert reason in err, err
    assert files(out) == before and not (out / "checkpoints").exists()


def test_what_lsvr_writes_in_a_run_folder_is_its_own(run1, tmp_path):
    from lsvr.train.run_folder import check_owned

    out = tmp_path / "run"
    shutil.copytree(run1, out)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # a run killed mid-line
    for name in ("plot.png", "test.json", "m.safetensors", ".lock"):
        (out / name).write_bytes(b"x")
    (out / "samples").mkdir()
    check_owned(out)  # no refusal
    (out / "samples.txt").write_text("mine")
    with pytest.raises(InputError, match=r"samples\.txt"):
        check_owned(out)


def test_a_refused_resume_leaves_the_run_folder_byte_identical(run1, tiny_data, tmp_path, capsys):
    out = tmp_path / "rm2"
    shutil.copytree(run1, out)
    before = files(out)
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 6, "model.width": 0.5}) == 2
    assert "does not fit this config's model" in capsys.readouterr().err
    assert files(out) == before
    new = tmp_path / "new"  # the same refusal into a new folder leaves no folder
    code = train(new, tiny_data, "--resume", run1 / "checkpoints" / "step-00000004.pt", **{"model.width": 0.5})
    assert code == 2 and not new.exists()


def test_a_start_on_a_full_disk_leaves_no_config_or_metrics(tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def full(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr("lsvr.train.metrics.open", full, raising=False)
    assert train(out, tiny_data, **{"train.max_steps": 2}) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_resume_auto_never_continues_another_runs_checkpoint(run1, tiny_data, tmp_path, capsys):
    run2 = tmp_path / "run2"
    assert train(run2, tiny_data, **{"train.max_steps": 6}) == 0
    out = tmp_path / "fy"
    shutil.copytree(run1, out)
    shutil.copy(run2 / "checkpoints" / "step-00000006.pt", out / "checkpoints")  # another run's, newer
    shutil.copy(run1 / "checkpoints" / "step-00000002.pt", out / "checkpoints" / "step-00000098.pt")  # misnamed
    (out / "checkpoints" / "latest").unlink()
    capsys.readouterr()
    assert train(out, tiny_data, "--resume", "auto", **{"train.max_steps": 5}) == 0
    err = capsys.readouterr().err
    assert "step-00000098.pt: named for step 98 but holds step 2" in err, err
    assert f"step-00000006.pt: a checkpoint of another run ({start_ids(run2)[0]})" in err, err
    assert f"resumed from {out / 'checkpoints' / 'step-00000004.pt'} at step 4" in err
    ids = start_ids(out)
    assert len(ids) == 2 and ids[0] == ids[1] == start_ids(run1)[0]
    assert checkpoints.load(checkpoints.find(out))["run_id"] == ids[0]
