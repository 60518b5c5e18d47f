"""`lsvr predict` for a record of a --resize short set: torchvision's evaluation, the shorter
side to eval_size then the centre eval_crop, from the record alone (and from its export, which
has no mean image); `lsvr eval --resize N --crop N` in place of the record's eval view."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tests.support import cli, one_line, write_tree

from lsvr.config import Config, to_dict
from lsvr.data.dataset import PreparedDataset
from lsvr.models.registry import build_model
from lsvr.preprocess import Preprocess
from lsvr.runs.record import CheckpointRecord

MEAN, STD = (100.0, 110.0, 120.0), (50.0, 60.0, 70.0)


def checkpoint_file(path, model_name: str, pre: Preprocess, *, crop: int):
    """A checkpoint of an untrained model as a run writes it (weights, config, record)."""
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=len(pre.classes), in_channels=pre.channels, crop=crop, dropout=0.0)
    cfg = Config()
    cfg.model.name = model_name
    torch.save(CheckpointRecord(model=model.state_dict(), config=to_dict(cfg), preprocess=pre).to_dict(), path)
    return path, model.eval()


def torchvision_view(path, resize: int, crop: int) -> np.ndarray:
    """Resize(resize) on the shorter side (torchvision's sizes) and CenterCrop(crop), by Pillow."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    long = int(resize * max(w, h) / min(w, h))
    nw, nh = (resize, long) if w <= h else (long, resize)
    pixels = np.asarray(image.resize((nw, nh), Image.Resampling.BILINEAR))
    top, left = round((nh - crop) / 2.0), round((nw - crop) / 2.0)  # CenterCrop's: half to even
    return pixels[top : top + crop, left : left + crop]


@pytest.mark.slow  # about 0.5 s: four images through two predicts and an export
def test_predict_takes_the_shorter_side_then_the_centre_crop(tmp_path, capsys):
    pre = Preprocess(classes=("a", "b", "c"), size=40, channels=3, resize="short", encoding="jpeg", crop=32,
                     eval_size=40, eval_crop=32, normalize="channel", channel_mean=MEAN, channel_std=STD)  # fmt: skip
    ckpt, model = checkpoint_file(tmp_path / "short.pt", "alexnet_small", pre, crop=32)
    rng = np.random.default_rng(0)
    files = []
    # wide (59 x 40 after the resize: its offset 13.5 rounds to 14), tall, upscaled, a strip
    for i, (w, h) in enumerate([(74, 50), (50, 90), (20, 30), (1, 9)]):
        files.append(tmp_path / f"{i}.png")  # PNG: the same pixels through lsvr's decoder and Pillow
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(files[-1])
    views = torch.from_numpy(np.stack([torchvision_view(f, 40, 32) for f in files])).float()  # (4, 32, 32, 3)
    with torch.no_grad():
        inputs = ((views - torch.tensor(MEAN)) / torch.tensor(STD)).permute(0, 3, 1, 2)
        expected = torch.softmax(model(inputs), dim=1)  # (4, 3)
    assert cli("export", ckpt, tmp_path / "short.safetensors") == 0
    for source in (ckpt, tmp_path / "short.safetensors"):
        capsys.readouterr()
        assert cli("predict", source, *files, "--top", "3", "--json") == 0
        for row, prediction in zip(expected, json.loads(capsys.readouterr().out)["predictions"], strict=True):
            got = {t["index"]: t["probability"] for t in prediction["top"]}
            assert np.allclose([got[i] for i in range(3)], row.numpy(), atol=1e-5), (got, row)


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """A 32 px squash set and its record for a run of crop 28 (eval 32 / 28)."""
    folder = tmp_path_factory.mktemp("eval-flags")
    tree = write_tree(folder / "tree", {"a": 6, "b": 6}, size=(40, 36))
    assert cli("prepare", tree, folder / "set", "--size", "32", "--no-progress") == 0
    return folder / "set", Preprocess.from_dataset(PreparedDataset(folder / "set"), crop=28, normalize="channel")


@pytest.fixture(scope="module")
def resnet(fixed, tmp_path_factory):
    """A resnet18 checkpoint for the set: its weights fit any crop."""
    return checkpoint_file(tmp_path_factory.mktemp("resnet") / "resnet.pt", "resnet18", fixed[1], crop=28)[0]


def test_a_crop_larger_than_the_resize_exits_2_before_any_file_is_read(tmp_path, capsys):
    capsys.readouterr()
    assert cli("eval", tmp_path / "no.pt", tmp_path / "no-set", "--resize", "24", "--crop", "28") == 2
    one_line(capsys, "--crop 28 is larger than --resize 24")
    assert cli("eval", tmp_path / "no.pt", tmp_path / "no-set", "--resize", "0") == 2
    one_line(capsys, "--resize must be in 1..4096, got 0")


@pytest.mark.slow  # about 1.2 s with the module's resnet18 checkpoint
def test_a_crop_larger_than_the_records_eval_size_exits_2(fixed, resnet, capsys):
    data, ckpt = fixed[0], resnet
    capsys.readouterr()
    assert cli("eval", ckpt, data, "--crop", "40") == 2
    one_line(capsys, "--crop 40 is larger than the checkpoint's eval size 32")


@pytest.mark.slow  # about 0.7 s: resnet18 built and run on 12 images
def test_the_flags_replace_the_records_eval_view(fixed, resnet, capsys):
    (data, pre), ckpt = fixed, resnet
    capsys.readouterr()
    assert cli("eval", ckpt, data, "--json") == 0
    assert json.loads(capsys.readouterr().out)["crop"] == pre.eval_crop == 28
    assert cli("eval", ckpt, data, "--resize", "32", "--crop", "24", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["resize"], result["crop"], result["images"]) == (32, 24, 12)


def test_a_crop_the_weights_do_not_fit_exits_2(fixed, tmp_path, capsys):
    data, pre = fixed
    ckpt, _ = checkpoint_file(tmp_path / "small.pt", "alexnet_small", pre, crop=28)  # fc6 sized by the crop
    capsys.readouterr()
    assert cli("eval", ckpt, data, "--crop", "16") == 2  # fc6 takes 128 * 1 * 1 inputs at 16, 128 * 2 * 2 at 28
    one_line(capsys, "--crop 16: model alexnet_small's weights fit 28 px crops only")
