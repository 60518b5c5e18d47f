"""The paper's ImageNet preset, run for a few steps on a tiny generated ImageNet-style tree."""

import pytest
import torch
from tests.support import ROOT, cli, write_tree

from lsvr.data.dataset import PreparedDataset
from lsvr.models.alexnet import AlexNetTV
from lsvr.models.weights import load_matching, read_state_dict
from lsvr.runs import checkpoints


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """n0xxxxxxx/ class folders of 500x375-ish JPEGs, prepared at 256 squashed (the paper)."""
    root = tmp_path_factory.mktemp("ilsvrc")
    classes = {"n01440764": 4, "n01443537": 4, "n01484850": 4}
    write_tree(root / "train", classes, size=(500, 375), seed=1)
    write_tree(root / "val", {name: 2 for name in classes}, size=(375, 500), seed=2)
    for split in ("train", "val"):
        assert cli("prepare", root / split, root / "prepared" / split, "--size", "256", "--no-progress") == 0
    return root / "prepared"


@pytest.mark.slow
def test_paper_preset_trains_a_few_steps(imagenet_like, tmp_path):
    run = tmp_path / "run"
    code = cli(
        "train", ROOT / "configs" / "alexnet_imagenet.yaml", "--out", run,
        "--set", f"data.train={imagenet_like / 'train'}", "--set", f"data.val={imagenet_like / 'val'}",
        "--set", "train.global_batch=4", "--set", "train.max_steps=2", "--set", "data.workers=1",
    )  # fmt: skip
    assert code == 0  # with the progress bar on, as a user sees it
    state = checkpoints.load(checkpoints.find(run))
    cfg = state["config"]
    assert cfg["optim"] == {
        "lr": 0.01, "lr_steps": [20, 40], "schedule": "step", "warmup_epochs": 0.0, "momentum": 0.9,
        "nesterov": False, "weight_decay": 0.0005, "bias_lr_mult": 2.0, "scale_lr": "none",
        "name": "sgd", "betas": [0.9, 0.999], "eps": 1e-8, "decay_biases": False, "decay_norms": False,
        "unit": "epoch", "warmup": 0.0, "peak": 0.0, "start_factor": 1e-4, "end_factor": 0.0,
    }  # fmt: skip
    assert (cfg["train"]["epochs"], cfg["data"]["crop"], cfg["data"]["normalize"]) == (60, 227, "mean_image")
    assert state["preprocess"]["crop"] == 227 and state["preprocess"]["size"] == 256
    assert state["model"]["classifier.fc6.weight"].shape == (4096, 9216)
    assert state["metrics"]["images"] == 6  # every validation image scored once
    meta = PreparedDataset(imagenet_like / "train").meta
    assert meta["resize"] == "squash" and meta["image_shape"] == [256, 256, 3]


@pytest.mark.slow
def test_torchvision_weights_convert_and_fine_tune(tmp_path, capsys):
    torch.manual_seed(0)
    tv = AlexNetTV(num_classes=1000)
    torch.save(tv.state_dict(), tmp_path / "alexnet-tv.pth")  # the layout torchvision saves
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"class{i}\n" for i in range(1000)))
    assert cli("convert", tmp_path / "alexnet-tv.pth", tmp_path / "tv.pt", "--classes", names) == 0
    image = tmp_path / "photo.jpg"
    write_tree(tmp_path / "tree", {"x": 1}, size=(300, 200))
    (tmp_path / "tree" / "x" / "img000.JPEG").rename(image)
    capsys.readouterr()
    assert cli("predict", tmp_path / "tv.pt", image, "--top", "3") == 0
    assert capsys.readouterr().out.count("class") == 3

    ten = AlexNetTV(num_classes=10)
    fresh = load_matching(ten, read_state_dict(tmp_path / "alexnet-tv.pth"), source="alexnet-tv.pth")
    assert fresh == ["classifier.6.weight", "classifier.6.bias"]  # another class count: re-initialised
    assert torch.equal(ten.features[0].weight, tv.features[0].weight)
    small = torch.nn.Linear(3, 3)
    with pytest.raises(Exception, match="do not fit"):
        load_matching(small, read_state_dict(tmp_path / "alexnet-tv.pth"), source="alexnet-tv.pth")


@pytest.mark.slow
def test_init_from_torchvision_weights_in_training(imagenet_like, tmp_path, capsys):
    torch.manual_seed(1)
    torch.save(AlexNetTV(num_classes=1000).state_dict(), tmp_path / "tv.pth")
    code = cli(
        "train", ROOT / "configs" / "alexnet_imagenet.yaml", "--out", tmp_path / "ft",
        "--set", "model.name=alexnet_tv", "--set", f"model.init_from={tmp_path / 'tv.pth'}",
        "--set", f"data.train={imagenet_like / 'train'}", "--set", "data.val=null", "--set", "data.crop=224",
        "--set", "train.global_batch=4", "--set", "train.max_steps=1", "--set", "train.progress=false",
    )  # fmt: skip
    assert code == 0
    assert "re-initialised: classifier.6.weight, classifier.6.bias" in capsys.readouterr().err
