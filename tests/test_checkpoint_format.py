"""The checkpoint's schema: a typed record with a format version, a versioned preprocess
record, checkpoints of the earlier unversioned layout read by every command, the one atomic
writer, and the named fault points."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tests.support import CONFIG, cli, sets

from lsvr.config import DebugConfig
from lsvr.config_file import describe_keys, load_config
from lsvr.errors import InputError
from lsvr.folders import write_atomic
from lsvr.preprocess import VERSION, Preprocess
from lsvr.runs import checkpoints
from lsvr.runs.record import FORMAT, CheckpointRecord
from lsvr.train.faults import Faults


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("format") / "run"
    assert cli("train", CONFIG, "--out", out, *sets(tiny_data, **{"train.max_steps": 4})) == 0
    return out


def old_layout(record: CheckpointRecord) -> dict:
    """The dict the trainer saved before checkpoints had a format: flat keys, the classes beside
    an unversioned preprocess dict, a `scheduler` entry and the config's `fault` section."""
    pre = record.preprocess
    config = {k: v for k, v in record.config.items() if k != "debug"}
    config["fault"] = {"kind": "none", "rank": 0, "step": 1, "point": "mid-write"}
    return {
        "model": record.model, "optimizer": record.optimizer, "scheduler": record.scheduler,
        "scaler": record.scaler, "step": record.step, "epoch": record.epoch, "loader": record.loader,
        "rng": record.rng, "config": config, "classes": list(pre.classes),
        "preprocess": {"crop": pre.crop, "size": pre.size, "channels": pre.channels, "resize": pre.resize,
                       "normalize": pre.normalize, "mean_image": pre.mean_image,
                       "channel_mean": list(pre.channel_mean), "channel_std": list(pre.channel_std)},
        "metrics": record.metrics, "best_top1": record.best_top1, "threads": record.threads, "world": record.world,
        "run_id": record.run_id, **record.provenance,
    }  # fmt: skip


@pytest.fixture(scope="module")
def old(run, tmp_path_factory):
    path = tmp_path_factory.mktemp("old") / "old.pt"
    torch.save(old_layout(checkpoints.read(checkpoints.find(run))), path)
    return path


def test_a_saved_record_carries_its_format_and_reads_back(run):
    raw = checkpoints.load(checkpoints.find(run))
    assert raw["format"] == FORMAT and raw["preprocess"]["version"] == VERSION
    record = checkpoints.read(checkpoints.find(run))
    assert record.step == 4 and record.classes == [str(i) for i in range(10)]
    assert record.preprocess.crop == record.preprocess.eval_crop == 28 and record.preprocess.size == 32
    assert record.preprocess.encoding == "raw" and record.setting("model", "name") == "alexnet_small"
    assert all(t.device.type == "cpu" for t in record.model.values())


def test_an_unversioned_checkpoint_reads_as_the_same_record(run, old):
    new, was = checkpoints.read(checkpoints.find(run)), checkpoints.read(old)
    assert was.preprocess == replace(new.preprocess, encoding=None, augment=None)  # the fields it did not record
    assert torch.equal(was.preprocess.mean_image, new.preprocess.mean_image)
    assert (was.step, was.loader, was.run_id, was.classes) == (new.step, new.loader, new.run_id, new.classes)


@pytest.mark.slow  # over half a second on 2 cores
def test_an_unversioned_checkpoint_is_read_by_every_command(run, old, tiny_data, tmp_path, capsys):
    capsys.readouterr()
    assert cli("eval", old, tiny_data, "--json") == 0
    from_old = json.loads(capsys.readouterr().out)
    assert cli("eval", run, tiny_data, "--json") == 0
    assert json.loads(capsys.readouterr().out)["top1"] == from_old["top1"]
    image = tmp_path / "one.png"
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(image)
    assert cli("predict", old, image, "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 1
    assert cli("info", old, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["step"], info["crop"], info["classes"], info["model"]) == (4, 28, 10, "alexnet_small")
    assert cli("export", old, tmp_path / "m.safetensors") == 0
    capsys.readouterr()
    assert cli("info", tmp_path / "m.safetensors", "--json") == 0
    assert json.loads(capsys.readouterr().out)["crop"] == 28
    resumed = tmp_path / "resumed"
    assert cli("train", CONFIG, "--out", resumed, "--resume", old, *sets(tiny_data, **{"train.max_steps": 6})) == 0
    assert checkpoints.read(checkpoints.find(resumed)).step == 6


def test_a_checkpoint_from_a_newer_lsvr_or_with_a_wrong_type_is_refused_naming_why(run, tmp_path):
    state = checkpoints.load(checkpoints.find(run))
    for change, message in (({"format": FORMAT + 1}, "written by a newer lsvr"), ({"step": "4"}, "step is a str"),
                            ({"preprocess": {**state["preprocess"], "version": VERSION + 1}}, "reads up to"),
                            ({"preprocess": {**state["preprocess"], "crop": -3}}, "crop is -3")):  # fmt: skip
        torch.save({**state, **change}, tmp_path / "x.pt")
        with pytest.raises(InputError, match=message):
            checkpoints.read(tmp_path / "x.pt")


def test_preprocess_round_trips_and_compares_field_by_field():
    pre = Preprocess(classes=("a", "b"), size=32, channels=1, resize="squash", crop=28, eval_size=32, eval_crop=28,
                     normalize="channel", channel_mean=(1.0,), channel_std=(2.0,))  # fmt: skip
    assert Preprocess.from_dict(pre.to_dict()) == pre
    assert Preprocess.from_dict(json.loads(json.dumps(pre.to_dict(mean_image=False)))) == pre
    other = replace(pre, size=28, crop=24, encoding="jpeg")  # encoding is not compared
    assert pre.differences(other) == ["size: checkpoint 32, dataset 28 (prepare with --size 32)",
                                      "data.crop: checkpoint 28, dataset 24"]  # fmt: skip
    assert pre.differences(other, fields=("crop",), names=("checkpoint", "now")) == ["data.crop: checkpoint 28, now 24"]


def test_write_atomic_replaces_whole_and_leaves_nothing_on_failure(tmp_path):
    target, seen = tmp_path / "f", []
    target.write_bytes(b"old")
    write_atomic(target, b"new bytes", at=seen.append)
    assert target.read_bytes() == b"new bytes" and seen == ["mid-write", "before-fsync", "before-rename"]
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        write_atomic(tmp_path / "d", b"x")  # a folder cannot be replaced by a file
    assert not list(tmp_path.glob(".*.tmp")) and (tmp_path / "d").is_dir()


def test_faults_strike_their_point_on_the_first_attempt_only():
    cfg = load_config(CONFIG, ["debug.fault=nan", "debug.rank=1", "debug.step=3"])
    faults, loss = Faults.arm(cfg.debug, attempt=0), torch.tensor(2.0)
    assert faults.at_step(loss, rank=1, step=3).isnan()
    assert faults.at_step(loss, rank=0, step=3) is loss and faults.at_step(loss, rank=1, step=2) is loss
    assert Faults.arm(cfg.debug, attempt=1) == Faults()  # a torchrun restart runs clean
    Faults(kind="kill_save", step=5, point="before-latest").at_save("before-latest", step=4)  # not yet: alive
    with pytest.raises(InputError, match=r"debug\.fault must be one of"):
        load_config(CONFIG, ["debug.fault=boom"])


def test_keys_list_the_debug_section_last_under_its_own_heading():
    lines = describe_keys().splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("# for tests only"))
    assert all(line.startswith("debug.") for line in lines[heading + 1 :])
    assert not any(line.startswith(("debug.", "fault.")) for line in lines[:heading])


def test_a_run_folder_of_the_earlier_layout_resumes(run, tiny_data, tmp_path):
    """Its config.yaml has the `fault` section (now `debug`) and its checkpoints have no format."""
    folder = tmp_path / "earlier"
    shutil.copytree(run, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["fault"] = {("kind" if k == "fault" else k): v for k, v in config.pop("debug").items()}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in checkpoints.steps(folder / "checkpoints"):
        torch.save(old_layout(checkpoints.read(path)), path)
    assert cli("train", CONFIG, "--out", folder, "--resume", "auto", *sets(tiny_data, **{"train.max_steps": 6})) == 0
    assert checkpoints.read(checkpoints.find(folder)).step == 6
    assert load_config(folder / "config.yaml").debug.fault == "none"  # written anew, in the current layout
    assert "fault" not in yaml.safe_load((folder / "config.yaml").read_text())


def test_the_earlier_fault_keys_read_as_debug_keys():
    assert load_config(CONFIG, ["fault.kind=nan", "fault.step=3"]).debug == DebugConfig(fault="nan", step=3)
    with pytest.raises(InputError, match=r"'fault' is the earlier name of 'debug'"):
        load_config(CONFIG, ["fault.kind=nan", "debug.step=3"])


def test_info_on_weights_from_elsewhere_shows_no_step(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    capsys.readouterr()
    assert cli("info", path, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["step"], info["epoch"], info["metrics"]) == (None, None, None)
