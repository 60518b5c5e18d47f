"""`lsvr convert` for every zoo model with torchvision weights: the record is the evaluation
transform torchvision publishes for those weights (lsvr.models.torchvision_weights), and predict
cuts the same pixels torchvision's Resize(antialias) + CenterCrop do on a PIL image.

The reference view is Pillow alone, as torchvision's Resize calls it for a PIL image:
Image.resize((w, h), BILINEAR or BICUBIC) at the shorter side `resize`, the longer
int(resize * long / short), then the crop at int(round((side - crop) / 2.0)). That it equals
weights.transforms() was checked with torchvision 0.29.1 (scripts/check_torchvision_convert.py,
step 2: equal pixels on five photos for every distinct transform in the table)."""

import json
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image
from tests.support import ROOT, cli, one_line, write_tree

from lsvr.convert import pick_weights, record_for
from lsvr.inference import load_images, load_model
from lsvr.models.registry import MODELS, build_model
from lsvr.models.torchvision_weights import WEIGHTS
from lsvr.preprocess import Preprocess
from lsvr.runs import checkpoints

RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
# the views of the table: (resize, crop, interpolation), each once
VIEWS = sorted({(w.resize, w.crop, w.interpolation) for entries in WEIGHTS.values() for w in entries})


def pil_view(path, resize: int, crop: int, interpolation: str) -> np.ndarray:
    """torchvision's Resize(resize, interpolation, antialias=True) + CenterCrop(crop) of a PIL image."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    long = int(resize * max(w, h) / min(w, h))
    nw, nh = (resize, long) if w <= h else (long, resize)
    pixels = np.asarray(image.resize((nw, nh), RESAMPLING[interpolation]))
    top, left = round((nh - crop) / 2.0), round((nw - crop) / 2.0)  # CenterCrop: int(round(x)), half to even
    return pixels[top : top + crop, left : left + crop]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A real photo (matplotlib's grace_hopper.jpg, 512 x 600, 4:2:0: a JPEG that a reduced decode
    would halve for any side up to 256) and the same turned on its side, re-encoded at 4:4:4."""
    hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    wide = tmp_path_factory.mktemp("photos") / "hopper-wide.jpg"
    Image.open(hopper).transpose(Image.Transpose.ROTATE_90).save(wide, quality=90, subsampling=0)
    return [hopper, wide]


def table_record(resize: int, crop: int, interpolation: str) -> Preprocess:
    """What convert records for weights of this view (with ImageNet's statistics)."""
    return Preprocess(classes=("a",), size=resize, channels=3, resize="short", crop=crop, eval_size=resize,
                      eval_crop=crop, interpolation=interpolation, reduced_decode=False, normalize="channel",
                      channel_mean=(124.0, 116.0, 104.0), channel_std=(58.0, 57.0, 57.0))  # fmt: skip


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: f"{v[0]}-{v[1]}-{v[2]}")
def test_predict_cuts_the_pixels_torchvision_does(photos, view):
    """Full decode (no DCT scaling), Pillow's resize at torchvision's sizes and the record's
    interpolation, CenterCrop's rounding: equal pixels, not near ones."""
    batch, good, bad = load_images(photos, table_record(*view))
    assert not bad and good == photos
    for image, photo in zip(batch.images.numpy(), photos, strict=True):
        expected = pil_view(photo, *view)
        assert image.shape == expected.shape and np.array_equal(image, expected), (
            photo.name, np.abs(image.astype(int) - expected).max())  # fmt: skip


def weights_file(path, model: str, *, classes: int = 10, crop: int = 224):
    """A state_dict in torchvision's key layout (lsvr's models have its keys and shapes), each
    tensor a constant of its own (no init: the VGGs' 130 M weights cost nothing to make)."""
    with torch.device("meta"):
        shapes = build_model(model, num_classes=classes, in_channels=3, crop=crop).state_dict()
    state = {k: torch.full(v.shape, (i % 7 + 1) / 7, dtype=v.dtype) for i, (k, v) in enumerate(shapes.items())}
    torch.save(state, path)
    return state


def test_the_table_covers_every_zoo_model_with_torchvision_weights():
    assert set(MODELS) - set(WEIGHTS) == {"alexnet", "alexnet_small", "alexnet_small_bn", "quicknet", "vit_s_16"}
    for model, entries in WEIGHTS.items():
        assert entries[0].member == "IMAGENET1K_V1", model  # the default
        assert len({w.file for w in entries}) == len(entries), model


def test_torchvisions_files_end_with_the_classifier_bias_convert_counts_classes_by():
    """convert takes the class count from a file's last tensor: in torchvision's own layout
    (tests/data/torchvision_keys.json, written from torchvision's models) it is the head's bias."""
    manifest = json.loads((ROOT / "tests" / "data" / "torchvision_keys.json").read_text())["models"]
    for model in WEIGHTS:
        key, shape = manifest[model]["keys"][-1]
        assert key.endswith("bias") and shape == [1000], (model, key, shape)


ENTRIES = [(model, w) for model, entries in WEIGHTS.items() for w in entries]


@pytest.mark.parametrize(("model", "published"), ENTRIES, ids=[w.name for _, w in ENTRIES])
def test_every_weights_is_found_by_name_and_file_name_and_recorded(model, published):
    """The weights convert takes for each enum member (named, or by torchvision's file name) and
    the record it writes of them: torchvision's transform, full decode, 0..255 statistics."""
    assert pick_weights(model, Path("any.pth"), published.member) == (published, "named by --weights")
    assert pick_weights(model, Path("any.pth"), published.name)[0] == published
    by_file = pick_weights(model, Path("downloads") / published.file, None)
    assert by_file == (published, f"torchvision's file name {published.file}")
    assert pick_weights(model, Path("mine.pth"), None)[0] == WEIGHTS[model][0]  # no name: V1
    pre = record_for(published, ["a", "b"])
    assert (pre.resize, pre.size, pre.eval_size, pre.eval_crop, pre.interpolation, pre.reduced_decode) == (
        "short", published.resize, published.resize, published.crop, published.interpolation, False)  # fmt: skip
    assert pre.channel_mean == pytest.approx([m * 255 for m in published.mean])
    assert pre.channel_std == pytest.approx([s * 255 for s in published.std])
    assert (pre.normalize, pre.mean_image, pre.classes) == ("channel", None, ("a", "b"))


# one model of each family, converted from a file and loaded as eval and predict load it; resnet50
# under torchvision's IMAGENET1K_V2 file name (its record: 232 / 224). Not the VGGs: their head is
# alexnet_tv's (classifier.6), and a 0.5 GB file took 37 s here (every model, VGGs too, converts
# and predicts as torchvision does in scripts/check_torchvision_convert.py; their keys and shapes
# are torchvision's in tests/test_torchvision_keys.py)
FAMILIES = {"alexnet_tv": "w.pth", "resnet50": "resnet50-11ad3fa6.pth", "googlenet": "w.pth", "vit_b_16": "w.pth",
            "convnext_tiny": "w.pth"}  # fmt: skip


@pytest.mark.slow  # 3-20 s a model on a busy 2-core machine
@pytest.mark.parametrize("model", list(FAMILIES))
def test_a_torchvision_state_dict_converts_and_loads(model, tmp_path, capsys):
    path = tmp_path / FAMILIES[model]
    state = weights_file(path, model)
    published = pick_weights(model, path, None)[0]
    assert cli("convert", path, tmp_path / "c.pt", "--model", model) == 0
    assert f"{published.name}: " in capsys.readouterr().out
    path.unlink()
    record = checkpoints.read(tmp_path / "c.pt")
    assert record.preprocess == record_for(published, [str(i) for i in range(10)])  # the file's 10 classes
    assert record.provenance["weights"] == published.name
    net, _, _ = load_model(tmp_path / "c.pt", torch.device("cpu"))  # what eval and predict load
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


@pytest.mark.slow  # a resnet18 of 3 classes converted, run through predict and eval
def test_predict_gives_the_probabilities_of_torchvisions_view_and_eval_runs(tmp_path, photos, capsys):
    """predict's probabilities equal the model's on the Pillow view; `lsvr eval` takes a set
    prepared at the weights' resize side with the classes from it (docs/MODELS.md's route)."""
    write_tree(tmp_path / "tree", {"cat": 2, "dog": 2, "fish": 2}, size=(300, 200))
    assert cli("prepare", tmp_path / "tree", tmp_path / "val", "--resize", "short", "--size", "256",
               "--no-progress") == 0  # fmt: skip
    torch.manual_seed(0)
    net = build_model("resnet18", num_classes=3, in_channels=3, crop=224).eval()
    views = torch.from_numpy(np.stack([pil_view(p, 256, 224, "bilinear") for p in photos])).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    inputs = ((views - mean) / std).permute(0, 3, 1, 2)  # torchvision's ToTensor + Normalize
    with torch.no_grad():
        scale = 4.0 / net(inputs).std().item()  # confident outputs: a 1e-5 agreement then means something
        net.fc.weight.mul_(scale)
        net.fc.bias.mul_(scale)
        expected = torch.softmax(net(inputs), dim=1)  # (2, 3)
    torch.save(net.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    assert cli("convert", tmp_path / "resnet18-f37072fd.pth", tmp_path / "r18.pt", "--model", "resnet18",
               "--classes-from", tmp_path / "val") == 0  # fmt: skip
    capsys.readouterr()
    assert cli("predict", tmp_path / "r18.pt", *photos, "--json") == 0
    got = np.zeros((len(photos), 3))
    for i, prediction in enumerate(json.loads(capsys.readouterr().out)["predictions"]):
        for t in prediction["top"]:
            got[i, t["index"]] = t["probability"]
    assert expected.max() > 0.6
    assert np.abs(got - expected.numpy()).max() < 1e-5
    assert cli("eval", tmp_path / "r18.pt", tmp_path / "val") == 0
    assert "on 6 images, the centre crop (224 px of 256)" in capsys.readouterr().out


def test_unknown_weights_are_refused_listing_the_known_ones(tmp_path, capsys):
    assert cli("convert", tmp_path / "w.pth", tmp_path / "c.pt", "--model", "vit_b_16", "--weights", "V2") == 2
    one_line(capsys, "--weights V2: not one of vit_b_16's: IMAGENET1K_V1, IMAGENET1K_SWAG_E2E_V1,"
             " IMAGENET1K_SWAG_LINEAR_V1")  # fmt: skip
    assert not (tmp_path / "c.pt").exists()


def test_an_existing_out_is_kept_unless_overwrite_is_given(tmp_path, capsys):
    out = tmp_path / "resnet18.pt"
    out.write_bytes(b"a file of the user's")
    assert cli("convert", tmp_path / "resnet18-f37072fd.pth", out, "--model", "resnet18") == 2
    one_line(capsys, f"{out}: exists; pass --overwrite to replace it")
    assert out.read_bytes() == b"a file of the user's"


@pytest.mark.slow  # resnet18 and a ViT-B at 384 built
def test_a_file_of_another_model_is_refused_naming_the_first_key(tmp_path, capsys):
    weights_file(tmp_path / "resnet34-b627a593.pth", "resnet34")
    assert cli("convert", tmp_path / "resnet34-b627a593.pth", tmp_path / "c.pt", "--model", "resnet18") == 2
    one_line(capsys, "resnet34-b627a593.pth: its tensors do not fit this model",
             "layer1.2.conv1.weight ((64, 64, 3, 3) in the file) is missing in the model",
             "(resnet34-b627a593.pth is torchvision's file of ResNet34_Weights.IMAGENET1K_V1:"
             " --model resnet34)")  # fmt: skip
    weights_file(tmp_path / "vit.pth", "vit_b_16")  # IMAGENET1K_V1's 224 px position embedding
    assert cli("convert", tmp_path / "vit.pth", tmp_path / "c.pt", "--model", "vit_b_16",
               "--weights", "IMAGENET1K_SWAG_E2E_V1") == 2  # fmt: skip
    one_line(capsys, "encoder.pos_embedding is (1, 197, 768) in the file, (1, 577, 768) in the model")
    assert not (tmp_path / "c.pt").exists()


def test_the_models_page_lists_every_weights_with_its_accuracy():
    page = (ROOT / "docs" / "MODELS.md").read_text()
    for model, w in ENTRIES:
        row = next((line for line in page.splitlines() if line.startswith("|") and f"`{w.file}`" in line), "")
        assert row.startswith(f"| {model} | `{w.member}` |"), w.name
        assert f"| {w.resize} / {w.crop} | {w.interpolation} |" in row, w.name
        assert (f"{w.acc1:.3f} / {w.acc5:.3f}" if w.acc1 is not None else "none") in row, w.name
