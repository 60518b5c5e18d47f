"""`lsvr bench loader|prepare|dist|train|layout` run end to end on tiny settings (what they print, not how fast)."""

import json
from pathlib import Path

import pytest
from tests.support import cli

pytestmark = pytest.mark.slow  # torchrun and DataLoader worker processes, timed runs


def test_bench_loader_and_prepare_report_every_figure(tmp_path, capsys):
    common = ["--images", "48", "--batch", "8", "--rounds", "1", "--epochs", "1", "--workers", "1",
              "--dir", tmp_path, "--json"]  # fmt: skip
    assert cli("bench", "loader", *common) == 0
    loader = json.loads(capsys.readouterr().out)
    pipelines = {
        "lsvr_jpeg",
        "lsvr_raw",
        "baseline_pil",
        "decode_limit",
        "gather_limit",
        "lsvr_rrc",
        "baseline_rrc",
        "lsvr_rrc_ra",
        "lsvr_jpeg_float",
    }
    try:  # torchvision's tensor recipe, where torchvision is installed
        import torchvision  # noqa: F401

        pipelines.add("baseline_torchvision")
    except ImportError:
        assert "float_ratio_vs_torchvision" not in loader and "float_ratio_vs_torchvision" not in loader["goals"]
    assert set(loader["images_per_sec_per_core"]) == pipelines
    assert all(v > 0 for v in loader["images_per_sec_per_core"].values())
    for key in ("ratio_vs_baseline", "fraction_of_decode_limit", "fraction_of_gather_limit",
                "rrc_ratio_vs_baseline", "float_ratio_vs_pil"):  # fmt: skip
        assert loader[key] > 0 and key in loader["goals"]
    # the prepare cost spread over fewer epochs weighs more
    assert loader["rrc_ratio_vs_baseline_1_epochs"] < loader["rrc_ratio_vs_baseline_10_epochs"]
    assert loader["rrc_ratio_vs_baseline_10_epochs"] < loader["rrc_ratio_vs_baseline"]
    assert loader["settings"]["prepare_cpu_s_per_image"] > 0
    assert cli("bench", "prepare", *common) == 0
    prepare = json.loads(capsys.readouterr().out)
    assert set(prepare["images_per_sec_per_core"]) == {"lsvr_prepare", "prepare_limit"}
    assert prepare["pipelines"]["lsvr_prepare"]["images"] == 48
    assert (tmp_path / "photos-48" / ".complete").is_file()
    assert cli("bench", "prepare", *common, "--source", "tar") == 0
    from_tar = json.loads(capsys.readouterr().out)
    assert from_tar["pipelines"]["tar_prepare"]["images"] == from_tar["pipelines"]["folder_prepare"]["images"] == 48
    assert from_tar["fraction_of_folder_prepare"] > 0 and all(v > 0 for v in from_tar["peak_rss_mib"].values())
    assert (tmp_path / "photos-48.tar").is_file() and not (tmp_path / "bench-prepare-tar-out").exists()


def test_bench_dist_times_world_1_and_2(capsys):
    assert cli("bench", "dist", "--model", "alexnet_small", "--batch", "4", "--steps", "1", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step_s"]["world_1"] > 0 and result["step_s"]["world_2"] > 0
    assert result["allreduce_s"] > 0 and result["allreduce_share_of_step"] > 0
    assert result["gradient_mb"] > 1  # alexnet_small: 4 bytes a parameter


def test_bench_train_reports_the_three_pipelines(tmp_path, capsys):
    assert cli("bench", "train", "--model", "alexnet_small", "--batch", "8", "--steps", "2", "--rounds", "2",
               "--images", "24", "--workers", "1", "--dir", tmp_path, "--json", "--profile") == 0  # fmt: skip
    out, err = capsys.readouterr()
    result = json.loads(out)  # stdout: the report alone; the profile's lines and each figure go to stderr
    assert set(result["images_per_sec"]) == {"model_only", "end_to_end", "baseline"}
    partial = [json.loads(line) for line in err.splitlines() if line.startswith('{"partial"')]
    assert [(p["round"], p["pipeline"]) for p in partial] == [
        (r, name) for r in (1, 2) for name in ("model_only", "end_to_end", "baseline")
    ]
    assert [p["images_per_sec"] for p in partial if p["round"] == 2 and p["pipeline"] == "baseline"] == [
        result["rounds"]["baseline"][1]
    ]
    profile = result["profile"]
    assert profile["steps"] == 2 and (tmp_path / "profile-train" / Path(profile["trace"]).name).is_file()
    assert profile["top"] and all(op["self_ms"] >= 0 for op in profile["top"])
    assert all(v > 0 for v in result["seconds_per_5120_images"].values())
    assert result["end_to_end_over_model_only"] > 0 and result["peak_memory_mb"] > 0
    assert all(len(values) == 2 for values in result["rounds"].values())
    assert set(result["images_per_cpu_second"]) == {"model_only", "end_to_end"}
    assert all(v > 0 for v in result["images_per_cpu_second"].values())
    assert result["end_to_end_over_model_only_per_cpu_second"] > 0


def test_bench_train_without_its_baseline(tmp_path, capsys):
    assert cli("bench", "train", "--model", "alexnet_small", "--batch", "8", "--steps", "1", "--rounds", "1",
               "--images", "24", "--workers", "1", "--dir", tmp_path, "--no-baseline") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "baseline" not in out.split("end_to_end / model_only")[0]  # no baseline row
    assert "end_to_end / baseline: not run" in out
    assert cli("bench", "loader", "--no-baseline", "--dir", tmp_path) == 2
    assert "--no-baseline leaves out `lsvr bench train`'s baseline" in capsys.readouterr().err


def test_bench_profile_is_for_train_alone(tmp_path, capsys):
    assert cli("bench", "loader", "--profile", "--dir", tmp_path) == 2
    assert "--profile profiles `lsvr bench train`'s steps" in capsys.readouterr().err


def test_bench_layout_reports_the_four_settings_against_fp32_contiguous(capsys):
    assert cli("bench", "layout", "--batch", "4", "--crop", "8", "--steps", "1", "--rounds", "2", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["model"] == "quicknet" and result["settings"]["channels"] == 1
    assert result["settings"]["crop"] == 8
    settings = {"fp32_contiguous", "fp32_channels_last", "bf16_contiguous", "bf16_channels_last"}
    assert set(result["images_per_sec"]) == set(result["ratio_to_baseline"]) == settings
    assert all(v > 0 for v in result["images_per_sec"].values())
    assert result["ratio_to_baseline"]["fp32_contiguous"] == 1.0
    assert all(len(values) == 2 for values in result["rounds"].values())
    assert result["fastest"] in settings
