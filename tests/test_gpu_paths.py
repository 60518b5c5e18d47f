"""The step's GPU paths, on CPU where they run there and on a GPU when one is present (the
GPU check runs this file): Augment's output in the autocast dtype, the fused LRN, cuDNN's
autotuning switch, and the GPU check's summary of a cut-short step."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lsvr.config import Config
from lsvr.data.augment import Augment
from lsvr.data.draws import Draws
from lsvr.evaluate import input_dtype
from lsvr.models import alexnet
from lsvr.models.alexnet import PaperLRN, fused_lrn

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ROOT = Path(__file__).resolve().parents[1]


def batch(device: str, count: int = 6, side: int = 40, crop: int = 32):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, crop, crop, 3), dtype=torch.uint8, generator=g)
    draws = Draws(torch.randint(0, side - crop + 1, (count,), generator=g),
                  torch.randint(0, side - crop + 1, (count,), generator=g),
                  torch.rand(count, generator=g) < 0.5, crop)  # fmt: skip
    mean_image = np.random.default_rng(0).uniform(0, 255, (side, side, 3)).astype(np.float32)
    return images.to(device), draws.to(torch.device(device)), mean_image


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
@pytest.mark.parametrize("normalize", ["mean_image", "channel"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_augment_in_the_autocast_dtype_rounds_the_float32_batch(device, normalize, channels_last):
    images, draws, mean_image = batch(device)
    common = {"mean_image": mean_image, "channel_mean": [120.0, 110.0, 100.0], "channel_std": [60.0, 55.0, 50.0],
              "crop": 32, "normalize": normalize, "channels_last": channels_last, "device": device}  # fmt: skip
    wide = Augment(**common).apply(images.clone(), draws)
    narrow = Augment(**common, dtype=torch.bfloat16).apply(images.clone(), draws)
    assert narrow.dtype == torch.bfloat16 and narrow.shape == wide.shape
    assert narrow.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # one bf16 rounding (half a unit in the 8th bit); the mean image's: its fp16 gather and the
    # fp16 subtraction before it (1/32 and 1/16 of a level at most), 1/8 with room
    tolerance = wide.abs() * 2**-8 + (1 / 8 if normalize == "mean_image" else 1e-5)
    assert ((narrow.float() - wide).abs() <= tolerance).all()


def test_the_model_input_is_the_autocast_dtype_on_a_gpu_only():
    assert input_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    assert input_dtype(torch.device("cuda"), "fp16") == torch.float16
    assert input_dtype(torch.device("cuda"), "fp32") == torch.float32
    assert input_dtype(torch.device("cpu"), "bf16") == torch.float32  # CPU autocast casts what it needs


def test_the_cpu_keeps_torchs_lrn(monkeypatch):
    calls = []
    monkeypatch.setattr(alexnet, "fused_lrn", lambda *a: calls.append(a))
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(PaperLRN()(x), F.local_response_norm(x, 5, 5e-4, 0.75, 2.0)) and not calls


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="torch.compile needs a C compiler"
)
def test_the_fused_lrn_is_torchs_within_1e_5(monkeypatch):
    """The compiled function against torch's op, forward and backward (here on CPU, where
    Inductor emits C++; the GPU check runs the CUDA case below)."""
    monkeypatch.setattr(alexnet, "_compiled", None)
    x = torch.randn(4, 96, 27, 27, requires_grad=True)
    ref = F.local_response_norm(x, 5, 5e-4, 0.75, 2.0)
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    out = fused_lrn(x, 5, 5e-4, 0.75, 2.0)
    (gout,) = torch.autograd.grad(out.square().sum(), x)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6) and torch.allclose(gout, gref, rtol=1e-5, atol=1e-6)


@cuda
def test_cuda_fused_lrn_matches_torchs_op():
    PaperLRN.FUSED = True
    x = torch.randn(32, 96, 27, 27, device="cuda", requires_grad=True)
    ref = F.local_response_norm(x, 5, 5e-4, 0.75, 2.0)
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    out = PaperLRN()(x)
    (gout,) = torch.autograd.grad(out.square().sum(), x)
    assert PaperLRN.FUSED, "torch.compile failed on this device: see the warning"
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6) and torch.allclose(gout, gref, rtol=1e-5, atol=1e-6)


@cuda
def test_cuda_setup_switches_cudnn_autotuning():
    from lsvr.train.parallel import setup

    cfg = Config()
    cfg.train.device = "cuda"
    setup(cfg)
    assert torch.backends.cudnn.benchmark
    cfg.train.cudnn_benchmark = False
    setup(cfg)
    assert not torch.backends.cudnn.benchmark


def test_the_gpu_check_summary_reports_a_cut_short_bench(tmp_path):
    (tmp_path / "steps.txt").write_text("preflight 0 4\nbf16_raw 124 40\ncompile skipped 0\n")
    (tmp_path / "preflight.json").write_text(json.dumps({"steps": {"device": "cuda:0", "images_per_sec_last": 9e3},
                                                         "doctor": {"software": {"torch": "2.11.0"}}}))  # fmt: skip
    partial = [{"partial": "train", "round": 1, "pipeline": p, "images_per_sec": v}
               for p, v in (("model_only", 41000.0), ("end_to_end", 39000.0))]  # fmt: skip
    (tmp_path / "bf16_raw.log").write_text("Fatal Python error: Aborted\n" + "\n".join(map(json.dumps, partial)))
    out = subprocess.run([sys.executable, ROOT / "scripts" / "gpu_summary.py", tmp_path], capture_output=True,
                         text=True, check=True).stdout.splitlines()  # fmt: skip
    assert out[-1] == "gpu_check: 1 of 3 steps passed in 44 s"
    bench = next(line for line in out if line.startswith("bf16_raw"))
    assert "124" in bench and "partial: model_only 41,000/s end_to_end 39,000/s" in bench
    assert "torch 2.11.0 on cuda:0: 9000.0 img/s; ok" in next(line for line in out if line.startswith("preflight"))
    assert "skip" in next(line for line in out if line.startswith("compile"))


def test_the_gpu_check_refuses_an_out_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    env = {"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(["bash", ROOT / "scripts" / "gpu_check.sh"], env=env, capture_output=True, text=True,
                            cwd=ROOT)  # fmt: skip
    assert result.returncode == 2 and "holds files of its own" in result.stderr
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"
    )
