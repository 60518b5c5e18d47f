"""The real training loop on the embedded data, and the commands that read its run."""

import json
import subprocess
import sys

import pytest
import torch
from tests.support import ROOT, cli

from lsvr.models.registry import build_model
from lsvr.runs import checkpoints
from lsvr.runs.metrics import read_metrics

DEBUG = ROOT / "configs" / "debug.yaml"


def data_args(prepared) -> list[str]:
    return ["--set", f"data.train={prepared / 'train'}", "--set", f"data.val={prepared / 'test'}"]


@pytest.fixture(scope="module")
def trained_run(demo_prepared, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    code = cli(
        "train", DEBUG, "--out", run, *data_args(demo_prepared),
        "--set", "model.width=0.5", "--set", "train.global_batch=64", "--set", "train.max_steps=80",
        "--set", "optim.lr=0.02", "--set", "optim.lr_steps=[9]", "--set", "train.log_every=10",
    )  # fmt: skip
    assert code == 0
    return run


@pytest.mark.slow
def test_tiny_config_learns(trained_run):
    records = read_metrics(trained_run / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 8 and losses[-1] < 0.6 * losses[0]
    (val,) = [r for r in records if r["kind"] == "val"]
    (epoch,) = [r for r in records if r["kind"] == "epoch"]
    assert epoch["step"] == 80 and epoch["images_per_sec"] > 0 and not epoch["complete"]  # max_steps mid-epoch
    assert val["images"] == 2000 and val["top1"] > 50.0  # chance is 10%
    assert all(r["sec_per_20_iter"] is None or r["sec_per_20_iter"] > 0 for r in records if r["kind"] == "train")


@pytest.mark.slow
def test_run_folder_and_checkpoint_contents(trained_run):
    assert (trained_run / "config.yaml").is_file()
    state = checkpoints.load(checkpoints.find(trained_run))
    for key in (
        "model optimizer scheduler scaler step epoch loader rng config classes preprocess lsvr_version commit metrics"
    ).split():
        assert key in state, key
    assert state["step"] == 80 and state["loader"] == {"epoch": 0, "step": 80, "sample": 80 * 64, "global_batch": 64}
    assert state["preprocess"]["crop"] == 28 and state["classes"][0] == "T-shirt/top"
    assert state["config"]["model"]["width"] == 0.5


@pytest.mark.slow
def test_eval_and_predict_commands(trained_run, demo_prepared, tmp_path, capsys):
    assert cli("eval", trained_run, demo_prepared / "test", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2000 and result["crops"] == 1 and 50 < result["top1"] <= result["top5"] <= 100
    assert cli("eval", trained_run, demo_prepared / "test", "--crops", "10", "--json") == 0
    assert json.loads(capsys.readouterr().out)["crops"] == 10
    assert cli("eval", trained_run, demo_prepared / "test", "--crops", "10") == 0
    assert "on 2000 images, 10 crops (corners, centre, mirrored) each" in capsys.readouterr().out
    from PIL import Image

    from lsvr.data.sources import read_idx

    images = read_idx(ROOT / "data/fashion-mnist-small/t10k-images-idx3-ubyte.gz")
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    Image.fromarray(images[1]).convert("RGB").save(tmp_path / "b.jpg")  # colour JPEG made grey
    assert cli("predict", trained_run, tmp_path / "a.png", tmp_path / "b.jpg", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == 2
    top = out["predictions"][0]["top"]
    assert len(top) == 5 and abs(sum(t["probability"] for t in top) - 1) < 0.2
    assert top[0]["probability"] >= top[-1]["probability"]
    assert cli("plot", trained_run) == 0 and (trained_run / "plot.png").stat().st_size > 1000
    assert cli("info", trained_run, "--json") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["kind"] == "run"


@pytest.mark.slow
def test_resume_continues_to_the_same_weights(demo_prepared, tmp_path):
    common = [*data_args(demo_prepared), "--set", "model.dropout=0.5", "--set", "model.width=0.5"]
    assert cli("train", DEBUG, "--out", tmp_path / "whole", *common, "--set", "train.max_steps=12") == 0
    part = tmp_path / "part"
    assert cli("train", DEBUG, "--out", part, *common, "--set", "train.max_steps=6") == 0
    assert cli("train", DEBUG, "--out", part, *common, "--set", "train.max_steps=12", "--resume", "auto") == 0
    a = checkpoints.load(checkpoints.find(tmp_path / "whole"))["model"]
    b = checkpoints.load(checkpoints.find(part))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "optim.learnig_rate=0.1"], "unknown key optim.learnig_rate"),
        (["--set", "train.epochs=many"], "train.epochs must be int"),
        (["--set", "data.train=/nonexistent/set"], "/nonexistent/set: no such folder"),
        (["--set", "data.crop=64"], "larger than the images"),
        (["--resume", "/nonexistent/run"], "/nonexistent/run: no such file or folder"),
    ],
)
def test_bad_training_input_is_one_line_exit_2(demo_prepared, tmp_path, capsys, extra, message):
    assert cli("train", DEBUG, "--out", tmp_path / "r", *data_args(demo_prepared), *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(trained_run, demo_prepared, tmp_path, capsys):
    args = [*data_args(demo_prepared), "--set", "model.name=alexnet_small_bn", "--resume", trained_run]
    assert cli("train", DEBUG, "--out", tmp_path / "r", *args) == 2
    assert "another model" in capsys.readouterr().err
    wider = [*data_args(demo_prepared), "--set", "model.width=1.0", "--resume", trained_run]
    assert cli("train", DEBUG, "--out", tmp_path / "r2", *wider) == 2
    assert "does not fit this config's model" in capsys.readouterr().err
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    assert cli("eval", tmp_path / "other.pt", demo_prepared / "test") == 2
    assert "not an lsvr checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_files_for_eval_and_predict(trained_run, demo_prepared, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert cli("predict", trained_run, tmp_path / "broken.png") == 2
    assert "broken.png" in capsys.readouterr().err
    (tmp_path / "empty.pt").write_bytes(b"")
    assert cli("eval", tmp_path / "empty.pt", demo_prepared / "test") == 2
    assert "empty.pt: an empty file, not a checkpoint file" in capsys.readouterr().err


@pytest.mark.slow
def test_entry_points_exit_2_without_traceback(tmp_path):
    for command in ([sys.executable, "-m", "lsvr"], [str(ROOT / ".venv" / "bin" / "lsvr")]):
        done = subprocess.run(
            [*command, "train", str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2
        assert done.stderr.strip() == f"lsvr train: error: {tmp_path / 'missing.yaml'}: config file not found"


@pytest.mark.slow
def test_time_to_accuracy_reads_the_run(trained_run):
    from lsvr.runs.metrics import time_to_accuracy

    records = read_metrics(trained_run / "metrics.jsonl")
    reached = time_to_accuracy(records, 40.0)
    assert reached["epoch"] == 1 and reached["seconds"] > 0 and reached["final_top1"] > 40
    assert time_to_accuracy(records, 100.1)["seconds"] is None


@pytest.mark.slow
def test_a_compiled_model_trains_to_the_same_weights(demo_prepared, tmp_path):
    """train.compile: torch.compile (inductor: a C++ compiler on CPU) gives the eager steps' result.
    alexnet_small_bn: torch 2.13's inductor on this CPU gives alexnet_small (LRN) zero conv
    gradients (docs/BENCHMARKS.md), which is torch's to fix, not lsvr's wiring."""
    runs = {}
    for mode in ("none", "default"):
        out = tmp_path / mode
        assert cli("train", DEBUG, "--out", out, *data_args(demo_prepared), "--set", "data.val=null",
                   "--set", "model.name=alexnet_small_bn", "--set", "train.max_steps=1",
                   "--set", f"train.compile={mode}") == 0  # fmt: skip
        runs[mode] = checkpoints.load(checkpoints.find(out))["model"]
    torch.manual_seed(0)  # the weights the runs started from: the Trainer seeds train.seed (0), then builds
    start = build_model("alexnet_small_bn", num_classes=10, in_channels=1, crop=28, dropout=0.0).state_dict()
    for name, eager in runs["none"].items():
        if not eager.is_floating_point():
            continue
        # Each tensor's first step is the same to 1% (BatchNorm's compiled reductions round
        # differently); a kernel that drops a gradient misses it whole.
        change = (eager - start[name]).norm()
        assert change > 0, name
        assert (runs["default"][name] - eager).norm() <= 0.01 * change + 1e-7, name
