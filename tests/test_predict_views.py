"""`lsvr predict` scores a file as `lsvr eval` scores it in a set prepared from it: the image
stored as prepare stores it (its policy, size and decode), then evaluation's view (the centred
window of Resize(eval_size) + CenterCrop(eval_crop), its mirror, the shifted crops), for every
resize policy x data.augment x data.eval_size. Checkpoints are records of untrained models, as
a run writes them (lsvr.train.setup.run_preprocess), not trained ones: the view is what is
tested, and any view but eval's changes the scores."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tests.support import cli
from tests.test_predict_short import checkpoint_file

from lsvr.config import Config
from lsvr.data.dataset import PreparedDataset
from lsvr.train.setup import run_preprocess

SIZE, CROP = 40, 28
# (width, height): wide, tall, square, and one over twice SIZE a side (prepare decodes it at 1/2)
SHAPES = {"a": [(60, 45), (45, 70)], "b": [(50, 50), (96, 130)], "c": [(70, 52), (41, 88)]}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A class-folder tree of JPEGs of several shapes, each class a colour of its own."""
    root = tmp_path_factory.mktemp("photos") / "tree"
    rng = np.random.default_rng(0)
    for c, (name, shapes) in enumerate(SHAPES.items()):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            pixels = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
            pixels[: h // 2, :, c] += np.uint8(100)  # not symmetric: a wrong window or mirror shows
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def prepared(photos, tmp_path_factory):
    """The tree prepared by each policy, once: {policy: (set, [(file, label)])}. A squash, center
    or pad set stores raw pixels, so predict of the photos must give eval's numbers exactly; a
    short set stores JPEG (its bytes are not the photo's), so its files are its own stored
    images written as PNG, which prepare's resize leaves as they are."""
    folder = tmp_path_factory.mktemp("sets")
    out = {}
    for policy in ("squash", "center", "pad", "short"):
        data = folder / policy
        assert cli("prepare", photos, data, "--size", SIZE, "--resize", policy, "--no-progress") == 0
        ds = PreparedDataset(data)
        if policy == "short":
            files = []
            for i in range(len(ds)):
                files.append(folder / f"short-{i}.png")
                Image.fromarray(ds.image(i)).save(files[-1])
            labels = ds.labels.tolist()
        else:  # eval's numbers are sums over the set: the order of the files does not matter
            files = sorted(photos.rglob("*.jpg"))
            labels = [ds.classes.index(f.parent.name) for f in files]
        out[policy] = data, list(zip(files, labels, strict=True))
    return out


def record(data, *, model: str = "quicknet", augment: str = "crop", eval_size: int = 0, normalize="channel",
           flip: bool = False, shift: int = 0):  # fmt: skip
    """The preprocessing record a run of these settings writes (the real run_preprocess)."""
    cfg = Config()
    cfg.model.name = model
    cfg.data.augment, cfg.data.eval_size, cfg.data.normalize = augment, eval_size, normalize
    cfg.data.val_flip, cfg.data.val_shift = flip, shift
    return run_preprocess(cfg, PreparedDataset(data), crop=CROP)


def predict_matches_eval(capsys, ckpt, data, files) -> dict:
    """Predict each file (all classes' probabilities) and eval the set: the same top-1, top-5 and loss."""
    capsys.readouterr()
    assert cli("eval", ckpt, data, "--json") == 0
    scored = json.loads(capsys.readouterr().out)
    assert cli("predict", ckpt, *(f for f, _ in files), "--top", len(SHAPES), "--json") == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    probs = torch.tensor([[{t["index"]: t["probability"] for t in p["top"]}[k] for k in range(len(SHAPES))]
                          for p in predictions], dtype=torch.float64)  # fmt: skip  # (N, classes)
    labels = torch.tensor([label for _, label in files])
    assert scored["images"] == len(files)
    assert scored["top1"] == pytest.approx(100.0 * float((probs.argmax(1) == labels).double().mean()), abs=1e-9)
    nll = float(-probs[torch.arange(len(files)), labels].log().mean())
    assert scored["loss"] == pytest.approx(nll, rel=1e-5, abs=1e-6), (scored, nll)
    return scored


@pytest.mark.slow  # about 8 s: 16 checkpoints of an untrained quicknet, each evaluated and predicted
@pytest.mark.parametrize("policy", ["squash", "center", "pad", "short"])
def test_predict_scores_as_eval_for_every_augment_and_eval_size(prepared, policy, tmp_path, capsys):
    data, files = prepared[policy]
    losses = []
    for augment in ("crop", "rrc"):
        for eval_size in (0, 34):  # 0: the run's default (the stored side); 34: windows resized to 28
            pre = record(data, augment=augment, eval_size=eval_size)
            ckpt, _ = checkpoint_file(tmp_path / f"{augment}-{eval_size}.pt", "quicknet", pre, crop=CROP)
            losses.append(predict_matches_eval(capsys, ckpt, data, files)["loss"])
    assert losses[0] != pytest.approx(losses[1], rel=1e-4)  # eval_size changes what is scored


@pytest.mark.slow  # about 3 s: resnet18's checkpoint written and read twice
def test_predict_of_a_resnet_trained_through_rrc_on_a_squash_set(prepared, tmp_path, capsys):
    """The issue's case: rrc and a model of declared ratio (256 / 224: eval_size 32 of the 40 px
    images) crashed predict (index 32 out of bounds for dimension 2 with size 32)."""
    data, files = prepared["squash"]
    pre = record(data, model="resnet18", augment="rrc")
    assert (pre.eval_size, pre.eval_crop) == (32, CROP)
    ckpt, _ = checkpoint_file(tmp_path / "resnet.pt", "resnet18", pre, crop=CROP)
    predict_matches_eval(capsys, ckpt, data, files)


@pytest.mark.slow  # about 2 s
@pytest.mark.parametrize(("normalize", "flip", "shift"), [("mean_image", False, 0), ("channel", True, 0),
                                                          ("mean_image", True, 2)])  # fmt: skip
def test_predict_scores_the_mirror_and_shifted_views_as_eval(prepared, tmp_path, capsys, normalize, flip, shift):
    data, files = prepared["center"]
    pre = record(data, normalize=normalize, flip=flip, shift=shift)
    ckpt, _ = checkpoint_file(tmp_path / "views.pt", "quicknet", pre, crop=CROP)
    predict_matches_eval(capsys, ckpt, data, files)


def test_a_link_to_nothing_in_a_folder_is_named_as_when_given_directly(prepared, tmp_path, capsys):
    data, files = prepared["squash"]
    ckpt, _ = checkpoint_file(tmp_path / "q.pt", "quicknet", record(data), crop=CROP)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    capsys.readouterr()
    assert cli("predict", ckpt, folder / "gone.jpg") == 2
    direct = capsys.readouterr().err
    assert f"{folder / 'gone.jpg'}: a link to {tmp_path / 'deleted.jpg'}, which does not exist" in direct
    (folder / "ok.jpg").write_bytes(files[0][0].read_bytes())
    assert cli("predict", ckpt, folder) == 2  # the good image is still predicted
    captured = capsys.readouterr()
    assert str(folder / "ok.jpg") in captured.out
    assert captured.err.splitlines()[0] in direct and "1 of 2 images could not be read" in captured.err
    (folder / "ok.jpg").unlink()
    assert cli("predict", ckpt, folder) == 2  # a folder of that link alone: named, not "no images"
    assert capsys.readouterr().err.splitlines()[0] in direct
