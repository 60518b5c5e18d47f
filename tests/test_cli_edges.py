"""Rough edges of the command line: bench arguments, closed pipes, float keys, read-only outputs, plots."""

import subprocess
import sys
import warnings

import pytest
from tests.support import ENV, ROOT, cli

from lsvr.config_file import load_config
from lsvr.errors import InputError


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["loader", "--images", "60"], "--images 60 is fewer than one batch (--batch 128)"),
        (["loader", "--images", "-5"], "--images must be a positive whole number, got -5"),
        (["prepare", "--rounds", "0"], "--rounds must be a positive whole number, got 0"),
        (["train", "--steps", "0"], "--steps must be a positive whole number, got 0"),
        (["layout", "--crop", "0"], "--crop must be in 1..4096, got 0"),
        (["layout", "--crop", "4"], "crop 4 is too small for quicknet (at least 8)"),
    ],
)
def test_bench_arguments_are_refused_inone_line(tmp_path, capsys, args, message):
    assert cli("bench", *args, "--dir", tmp_path / "bench") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "bench").exists()  # refused before any photo is generated


@pytest.mark.slow
def test_long_output_into_a_closed_pipe_exits_141_without_traceback():
    """`lsvr ... | head -1`: the reader closes the pipe; made certain by closing it first."""
    code = "import sys; from lsvr.cli import main; sys.argv=['lsvr','train','--keys']; raise SystemExit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and b"Traceback" not in err, err.decode()


@pytest.mark.parametrize("text", ["1e-3", "1E-3", ".001", "1e-03"])
def test_float_keys_take_every_finite_float_literal(tmp_path, text):
    assert load_config(ROOT / "configs" / "debug.yaml", [f"optim.lr={text}"]).optim.lr == pytest.approx(1e-3)
    preset = tmp_path / "lr.yaml"
    preset.write_text(f"optim:\n  lr: {text}\n")
    assert load_config(preset).optim.lr == pytest.approx(1e-3)  # a YAML file alike


@pytest.mark.parametrize("text", ["nan", ".nan", "inf", "-.inf", "1e999", "fast", "true"])
def test_float_keys_refuse_non_finite_and_non_numbers(text):
    with pytest.raises(InputError, match=r"optim\.lr must be"):
        load_config(ROOT / "configs" / "debug.yaml", ["optim.weight_decay=0.0005", f"optim.lr={text}"])


def _run_of_one_point(folder):
    folder.mkdir()
    (folder / "metrics.jsonl").write_text('{"kind": "train", "time": 1.0, "step": 1, "epoch": 1, "loss": 2.3}\n')
    return folder


@pytest.mark.slow
def test_plot_of_a_one_point_run_draws_it_without_warnings(tmp_path):
    from lsvr.plot import plot_run

    run = _run_of_one_point(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels" warning fails the test
        out = plot_run(run)
    assert out.is_file() and out.stat().st_size > 1000


def test_read_only_outputs_are_refused_naming_the_path(tmp_path, capsys, read_only_dir):
    run = _run_of_one_point(tmp_path / "run")
    assert cli("plot", run, "--out", read_only_dir / "plot.png") == 2
    assert f"{read_only_dir / 'plot.png'}: plot cannot be written" in capsys.readouterr().err
    assert cli("export", run, read_only_dir / "w.safetensors") == 2
    assert f"{read_only_dir / 'w.safetensors'}: export file cannot be written" in capsys.readouterr().err
    assert cli("bench", "prepare", "--images", "4", "--dir", read_only_dir / "bench") == 2
    assert f"{read_only_dir / 'bench'}: bench folder cannot be written" in capsys.readouterr().err


def test_bench_dir_that_is_a_file_is_refused(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("hello\n")
    assert cli("bench", "loader", "--dir", text) == 2
    err = capsys.readouterr().err
    assert err == f"lsvr bench: error: --dir {text}: not a folder (a file is there)\n"
    assert text.read_text() == "hello\n"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_device_cuda_without_a_gpu_names_the_flag(command, tmp_path, capsys):
    assert cli(command, tmp_path / "run", tmp_path / "set", "--device", "cuda") == 2
    assert "--device cuda but no CUDA device is available" in capsys.readouterr().err
