"""Wrong files and values given to the CLI: one line on stderr naming the file or flag, exit 2."""

import os

import pytest
from tests.support import ROOT, cli, one_line

CONFIG = ROOT / "configs" / "debug.yaml"


@pytest.fixture(params=["text", "random", "empty", "pickle"])
def not_a_checkpoint(request, tmp_path):
    path = tmp_path / f"{request.param}.pt"
    # pickle: a legacy pickle whose BINGET 101 fails inside torch's unpickler (KeyError: 101)
    content = {"text": b"hello\n", "random": b"rn" + os.urandom(4000), "empty": b"", "pickle": b"\x80\x02he."}
    path.write_bytes(content[request.param])
    return path


def test_a_file_not_written_by_torch_save_is_refused_by_every_reader(not_a_checkpoint, tiny_data, tmp_path, capsys):
    bad = not_a_checkpoint
    assert cli("info", bad) == 2
    one_line(capsys, str(bad), "checkpoint")
    assert cli("eval", bad, tiny_data) == 2
    one_line(capsys, str(bad))
    assert cli("convert", bad, tmp_path / "out.pt") == 2
    one_line(capsys, str(bad), "weights")
    assert not (tmp_path / "out.pt").exists()


def test_a_text_file_as_init_from_is_refused(tiny_data, tmp_path, capsys):
    bad = tmp_path / "text.txt"
    bad.write_text("hello\n")
    sets = ["--set", f"data.train={tiny_data}", "--set", "data.val=null", "--set", f"model.init_from={bad}"]
    assert cli("train", CONFIG, "--out", tmp_path / "run", *sets) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{bad}: not a weights file" in err.splitlines()[-1]


def _run_with_stray_lines(folder):
    folder.mkdir()
    (folder / "config.yaml").write_text("")
    lines = [
        b'{"kind": "train", "time": 1.0, "step": 1, "epoch": 1, "loss": 2.3}',
        b"[1, 2]",
        b"\xff\xfe not utf-8",
        b'{"kind": "val"}',
        b'{"kind": "val", "time": 2.0, "step": 2, "epoch": 1, "loss": 2.0, "top1": 40.0, "top5": 80.0}',
        b'{"kind": "train", "time": 3.0, "step": 2, "epoch": 1, "loss": 2.1}',
    ]
    (folder / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def test_plot_and_info_skip_lines_that_are_not_records(tmp_path, capsys):
    run = _run_with_stray_lines(tmp_path / "run")
    assert cli("plot", run) == 0
    assert (run / "plot.png").stat().st_size > 0
    assert cli("info", run, "--json") == 0
    out = capsys.readouterr().out
    assert '"best_top1": 40.0' in out


@pytest.mark.parametrize(("out", "reason"), [("x.json", "'.json' is not an image format"), ("x", "no suffix")])
def test_plot_refuses_an_output_format_before_plotting(tmp_path, capsys, out, reason):
    run = _run_with_stray_lines(tmp_path / "run")
    assert cli("plot", run, "--out", tmp_path / out) == 2
    one_line(capsys, f"--out {tmp_path / out}", reason, "png, ps, raw, rgba, svg")
    assert not list(tmp_path.glob("x*"))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.threads=-3", "train.threads must be >= 0, got -3"),
        ("train.label_smoothing=1.5", "train.label_smoothing must be in [0, 1), got 1.5"),
        ("train.seed=-1", "train.seed must be >= 0, got -1"),
        ("optim.momentum=2", "optim.momentum must be in [0, 1), got 2.0"),
        ("optim.weight_decay=-1", "optim.weight_decay must be >= 0, got -1.0"),
        ("optim.warmup_epochs=-1", "optim.warmup_epochs must be >= 0, got -1.0"),
        ("guard.max_skips=-1", "guard.max_skips must be >= 0, got -1"),
        ("guard.clip_norm=-1", "guard.clip_norm must be >= 0, got -1.0"),
        ("checkpoint.every_steps=-1", "checkpoint.every_steps must be >= 0, got -1"),
        ("train.max_steps=-1", "train.max_steps must be >= 0, got -1"),
        ("parallel.bucket_mb=0", "parallel.bucket_mb must be >= 1, got 0"),
    ],
)
def test_out_of_range_settings_are_refused_before_training(tmp_path, capsys, setting, message):
    assert cli("train", CONFIG, "--out", tmp_path / "run", "--set", setting) == 2
    one_line(capsys, f"config: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("optim:\n  lr: 0.1\n  lr: 0.2\n", "'lr'", 3),
        ("optim:\n  lr: 0.1\ntrain:\n  epochs: 1\noptim:\n  momentum: 0.5\n", "'optim'", 5),
    ],
)
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, capsys, text, key, line):
    preset = tmp_path / "twice.yaml"
    preset.write_text(text)
    assert cli("train", preset, "--out", tmp_path / "run") == 2
    one_line(capsys, f"{preset}: the key {key} is given twice", f"(line {line})")


def test_every_shipped_preset_still_loads():
    from lsvr.config_file import load_config

    for preset in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(preset)


def test_a_binary_file_as_the_config_isone_line(tmp_path, capsys):
    image = tmp_path / "img.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    assert cli("train", image, "--out", tmp_path / "run") == 2
    one_line(capsys, f"{image}: not a YAML config (not UTF-8 text")


def test_labels_shorter_than_images_names_the_file_and_both_counts(tiny_data, tmp_path, capsys):
    import shutil

    import numpy as np

    damaged = shutil.copytree(tiny_data, tmp_path / "set")
    labels = np.load(damaged / "labels.npy")
    np.save(damaged / "labels.npy", labels[:100])
    assert cli("info", damaged) == 2
    one_line(capsys, f"{damaged / 'labels.npy'}: 100 labels, images.npy and meta.json count {len(labels)} images")


def test_a_missing_path_is_named_as_missing(tiny_data, tmp_path, capsys):
    missing = tmp_path / "nothere"
    assert cli("convert", missing, tmp_path / "out.pt") == 2
    one_line(capsys, f"{missing}: no such file or folder")
    assert cli("eval", missing, tiny_data) == 2
    one_line(capsys, f"{missing}: no such file or folder")


def test_a_run_whose_only_checkpoint_is_truncated_says_none_loads(tiny_data, tmp_path, capsys):
    import torch

    from lsvr.runs.record import CheckpointRecord
    from lsvr.train import checkpoint

    run = tmp_path / "run"
    checkpoint.Checkpointer(run / "checkpoints", keep=2).save(CheckpointRecord(step=2, model={"w": torch.zeros(4)}))
    step = run / "checkpoints" / "step-00000002.pt"
    step.write_bytes(step.read_bytes()[:300])
    for command in (("eval", run, tiny_data), ("convert", run, tmp_path / "out.pt")):
        capsys.readouterr()
        assert cli(*command) == 2
        last = capsys.readouterr().err.splitlines()[-1]
        assert f"{run}: holds 1 checkpoint file(s) but none loads (the newest, step-00000002.pt: a truncated" in last
