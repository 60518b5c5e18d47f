"""`lsvr doctor`: the machine's part, a prepared set's size against RAM and its read rate, and
the workers and encoding it recommends."""

import json

import torch
from tests.support import cli, one_line

from lsvr.data.dataset import PreparedDataset
from lsvr.doctor import _recommend


def test_the_machine_report_names_the_software_and_hardware(capsys):
    assert cli("doctor", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    software = report["software"]
    assert software["torch"] == torch.__version__ and software["cuda_available"] == torch.cuda.is_available()
    assert software["libjpeg_turbo"].startswith("works")
    assert report["cpu"]["usable_cores"] >= 1 and report["cpu"]["simd"]
    assert report["memory"]["total_gb"] > 0 and report["disk"]["free_gb"] >= 0
    assert len(report["devices"]) == torch.cuda.device_count()
    assert report["recommend"]["data.workers"] >= 1 and "dataset" not in report


def test_a_prepared_set_is_read_for_its_rate_and_weighed_against_ram(tiny_data, capsys):
    assert cli("doctor", tiny_data, "--seconds", "0.4", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    found = report["dataset"]
    assert found["images"] == 160 and found["encoding"] == "raw" and found["fits_page_cache"]
    assert all(rate > 0 for rate in found["read_decode_images_per_sec"].values())
    assert report["recommend"]["encoding"] == "raw" and report["recommend"]["why"]
    assert cli("doctor", tiny_data, "--seconds", "0.2") == 0
    text = capsys.readouterr().out
    assert "read_decode_images_per_sec: 1_thread" in text and "recommend:" in text


def test_recommendations_follow_the_set_and_the_memory(tiny_data):
    ds = PreparedDataset(tiny_data)
    cores = 4
    found = {"read_decode_images_per_sec": {"1_thread": 100.0, "4_threads": 380.0}, "page_cache_room_gb": 0.0,
             "fits_page_cache": False, "size_gb": 0.2}  # fmt: skip
    tight = _recommend(ds, found, {}, cores=cores, gpus=2)
    assert tight["encoding"] == "jpeg" and tight["data.workers"] == 2  # 4 cores, 2 GPUs: 2 each
    flat = {**found, "read_decode_images_per_sec": {"1_thread": 100.0, "4_threads": 105.0}}
    assert _recommend(ds, flat, {}, cores=cores, gpus=0)["data.workers"] == 1  # more threads read no faster


def test_bad_input_is_one_line(tmp_path, capsys):
    assert cli("doctor", tmp_path) == 2
    assert "no meta.json (not a prepared dataset)" in one_line(capsys)
    assert cli("doctor", tmp_path / "missing") == 2
    assert "no such folder" in one_line(capsys)
    assert cli("doctor", "--seconds", "0") == 2
    assert "--seconds must be > 0, got 0.0" in one_line(capsys)
