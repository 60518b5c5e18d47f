"""`lsvr export CHECKPOINT OUT.onnx` and `lsvr predict OUT.onnx`: every model family's graph, run
by onnxruntime on uint8 images, gives lsvr's logits (its own normalisation, a mean image or
channel statistics) within 1e-4 at two batch sizes; predict from the .onnx gives the checkpoint's
top-5 on JPEGs, mirrored and shifted views included; the metadata holds the record; bad
outputs, a missing extra and views the graph cannot score are refused in one line."""

import json
import sys

import numpy as np
import pytest
import simplejpeg
import torch
from tests.support import cli, one_line

from lsvr.bench.photos import photo, pink_field
from lsvr.config import Config, to_dict
from lsvr.data.draws import Draws
from lsvr.inference import augment_for, load_model
from lsvr.models.registry import build_model
from lsvr.preprocess import Preprocess
from lsvr.runs.record import CheckpointRecord

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CLASSES = tuple(f"class{i}" for i in range(7))
MEAN, STD = (110.0, 115.0, 105.0), (60.0, 55.0, 65.0)

# family -> (model, stored size, eval crop, channels, normalize, width): the smallest member at a
# small crop it takes. resnet18's record evaluates the mirror and shifted views too (predict runs
# the graph per view); alexnet's is the paper's mean image (at 72 / 67: a centre offset of 2.5,
# rounded half to even as Draws.centred rounds it); quicknet's is grey.
FAMILIES = {
    "alexnet": ("alexnet", 72, 67, 3, "mean_image", 1.0),
    "alexnet_tv": ("alexnet_tv", 64, 63, 3, "channel", 1.0),
    "quicknet": ("quicknet", 20, 16, 1, "channel", 0.25),
    "resnet": ("resnet18", 40, 32, 3, "channel", 1.0),
    "vgg": ("vgg11", 36, 32, 3, "channel", 1.0),
    "googlenet": ("googlenet", 36, 32, 3, "channel", 1.0),
    "vit": ("vit_s_16", 36, 32, 3, "channel", 1.0),
    "convnext": ("convnext_tiny", 36, 32, 3, "channel", 1.0),
}


def record(family: str) -> Preprocess:
    _, size, crop, channels, normalize, _ = FAMILIES[family]
    rng = np.random.default_rng(1)
    mean = torch.from_numpy(rng.uniform(60, 200, (size, size, channels)).astype(np.float32))
    return Preprocess(classes=CLASSES, size=size, channels=channels, resize="squash", encoding="jpeg", crop=crop,
                      eval_size=size, eval_crop=crop, eval_flip=family == "resnet", eval_shift=2 * (family == "resnet"),
                      normalize=normalize, mean_image=mean, channel_mean=MEAN[:channels],
                      channel_std=STD[:channels])  # fmt: skip


def checkpoint(path, family: str):
    """A checkpoint of a seeded random model: its zero-initialised tensors (a ViT's head) and its
    BatchNorm statistics drawn too, so that every part moves the logits, and its classifier
    scaled to logits of std 2 (alexnet_tv's init gives 0.01: 1e-4 would say little there)."""
    name, _, crop, channels, _, width = FAMILIES[family]
    pre = record(family)
    torch.manual_seed(0)
    model = build_model(name, num_classes=len(CLASSES), in_channels=channels, crop=crop, dropout=0.0, width=width)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_mean"):
                tensor.normal_(0, 0.1)
            elif key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point() and not tensor.any():
                tensor.normal_(0, 0.05)
        std = model.eval()(torch.randn(4, channels, crop, crop)).std()
        for tensor in list(model.state_dict().values())[-2:]:  # the classifier's weight and bias
            tensor.mul_(2 / std)
    cfg = Config()
    cfg.model.name, cfg.model.width = name, width
    torch.save(CheckpointRecord(model=model.state_dict(), config=to_dict(cfg), preprocess=pre).to_dict(), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """family -> (checkpoint, its .onnx), each exported once, when a test first asks for it."""
    folder, made = tmp_path_factory.mktemp("onnx"), {}

    def get(family: str):
        if family not in made:
            ckpt = checkpoint(folder / f"{family}.pt", family)
            assert cli("export", ckpt, folder / f"{family}.onnx") == 0
            made[family] = ckpt, folder / f"{family}.onnx"
        return made[family]

    return get


def lsvr_logits(ckpt, images: torch.Tensor) -> torch.Tensor:
    """lsvr's own path: the checkpoint's model on Augment's normalisation of (N, crop, crop, C)
    uint8 windows, cut at the centre of images stored at the record's size."""
    model, state, _ = load_model(ckpt, torch.device("cpu"))
    pre = state.preprocess
    draws = Draws.centred(np.array([[pre.size, pre.size]] * len(images)), resize=pre.eval_size, crop=pre.eval_crop)
    with torch.no_grad():
        return model(augment_for(pre, torch.device("cpu")).apply(images.clone(), draws))


@pytest.mark.slow  # one export per family: 5-30 s each on 2 cores
@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnxruntime_gives_lsvrs_logits_for_every_family(family, exported, capsys):
    ckpt, out = exported(family)
    assert "images: uint8 (N, " in capsys.readouterr().out
    pre = record(family)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(2)
    worst = 0.0
    for n in (1, 5):  # the batch axis is free (the export traced 2)
        images = torch.randint(0, 256, (n, pre.eval_crop, pre.eval_crop, pre.channels), dtype=torch.uint8,
                               generator=generator)  # fmt: skip
        expected = lsvr_logits(ckpt, images)
        (got,) = session.run(["logits"], {"images": images.permute(0, 3, 1, 2).contiguous().numpy()})
        assert got.shape == (n, len(CLASSES)) and got.dtype == np.float32
        assert expected.std() > 0.5  # logits that say something
        worst = max(worst, float(np.abs(got - expected.numpy()).max()))
    print(f"{family}: max |logit difference| {worst:.2e}")
    assert worst < 1e-4


def photos(folder, count: int = 5) -> list:
    """JPEGs with a photo's statistics, of sizes that resize differently."""
    rng = np.random.default_rng(3)
    fields = [pink_field(rng, 256) for _ in range(2)]
    paths = []
    for i, (w, h) in enumerate([(120, 90), (64, 100), (50, 50), (200, 150), (90, 120)][:count]):
        paths.append(folder / f"photo{i}.jpg")
        paths[-1].write_bytes(simplejpeg.encode_jpeg(photo(np.random.default_rng([3, i]), fields, w, h), quality=90))
    return paths


@pytest.mark.slow  # exports resnet18 (with test_onnxruntime_gives_lsvrs_logits: once) and alexnet
@pytest.mark.parametrize("family", ["resnet", "alexnet"])
def test_predict_from_the_onnx_equals_predict_from_the_checkpoint(family, exported, tmp_path, capsys):
    """resnet: channel statistics, the record's mirror and shifted views (the graph run per view);
    alexnet: the mean image's centre window inside the graph."""
    ckpt, out = exported(family)
    files = photos(tmp_path)
    runs = {}
    for source in (ckpt, out):
        capsys.readouterr()
        assert cli("predict", source, *files, "--json") == 0
        runs[source.suffix] = json.loads(capsys.readouterr().out)["predictions"]
    for a, b in zip(runs[".pt"], runs[".onnx"], strict=True):
        assert a["image"] == b["image"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        assert np.allclose([t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-5)


@pytest.mark.slow  # exports alexnet (or reuses it)
def test_the_metadata_holds_the_record_and_views_it_cannot_score_are_refused(exported, tmp_path, capsys):
    _, out = exported("alexnet")
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    meta = json.loads(props["lsvr"])
    assert meta["classes"] == list(CLASSES) and meta["model"]["name"] == "alexnet"
    assert Preprocess.from_dict(meta["preprocess"]) == record("alexnet")  # every field but the mean image
    assert props["input"].startswith("images: uint8 (N, 3, 67, 67), NCHW, RGB, 0..255")
    assert [i.name for i in model.graph.input] == ["images"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 67, 67]  # a named, free batch axis
    # the mean image's centre window is in the graph; the mirror would need its mirrored window
    flipped = dict(meta, preprocess={**meta["preprocess"], "eval_flip": True})
    next(p for p in model.metadata_props if p.key == "lsvr").value = json.dumps(flipped)
    onnx.save(model, str(tmp_path / "flip.onnx"))
    capsys.readouterr()
    assert cli("predict", tmp_path / "flip.onnx", *photos(tmp_path, 1)) == 2
    one_line(capsys, "flip.onnx: its record averages the mirror (eval_flip) too", "mean image's centre window")
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    assert cli("predict", tmp_path / "bare.onnx", *photos(tmp_path, 1)) == 2
    one_line(capsys, "bare.onnx: an ONNX model without lsvr's metadata")


@pytest.fixture
def small(tmp_path):
    return checkpoint(tmp_path / "q.pt", "quicknet")


def test_bad_outputs_are_refused_before_any_work(small, tmp_path, read_only_dir, capsys):
    before = sorted(tmp_path.iterdir())
    for out, needle in ((tmp_path / "q.onnxx", "q.onnxx: the export is a .safetensors file (weights) or an .onnx"),
                        (read_only_dir / "q.onnx", "q.onnx")):  # fmt: skip
        capsys.readouterr()
        assert cli("export", small, out) == 2
        one_line(capsys, needle)
    (tmp_path / "mine.onnx").write_bytes(b"a user's file")
    assert cli("export", small, tmp_path / "mine.onnx") == 2
    one_line(capsys, "mine.onnx: exists; pass --overwrite")
    assert (tmp_path / "mine.onnx").read_bytes() == b"a user's file"
    assert sorted(tmp_path.iterdir()) == sorted([*before, tmp_path / "mine.onnx"])
    assert not any(read_only_dir.iterdir())


@pytest.mark.parametrize(("command", "module"), [("export", "onnxscript"), ("predict", "onnxruntime")])
def test_a_missing_onnx_extra_is_named_with_its_install_line(command, module, small, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: its import raises
    (tmp_path / "m.onnx").write_bytes(b"not read")
    args = (small, tmp_path / "out.onnx") if command == "export" else (tmp_path / "m.onnx", tmp_path / "x.jpg")
    assert cli(command, *args) == 2
    one_line(capsys, f"{command} of .onnx files needs the onnx extra ({module} is missing)", "pip install 'lsvr[onnx]'")
    assert not (tmp_path / "out.onnx").exists()


def test_predict_refuses_an_unreadable_onnx_and_another_device(tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07random bytes, not a protobuf")
    jpeg = photos(tmp_path, 1)
    assert cli("predict", tmp_path / "junk.onnx", *jpeg) == 2
    one_line(capsys, "junk.onnx: not a readable ONNX model")
    assert cli("predict", tmp_path / "none.onnx", *jpeg) == 2
    one_line(capsys, "none.onnx: no such file")
    assert cli("predict", tmp_path / "junk.onnx", *jpeg, "--device", "cuda") == 2
    one_line(capsys, "--device cuda: an .onnx file runs on the CPU")


def test_eval_and_export_of_an_onnx_file_say_predict_runs_it(tiny_data, tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"a graph")
    for command in (
        ("eval", tmp_path / "m.onnx", tiny_data),
        ("export", tmp_path / "m.onnx", tmp_path / "w.safetensors"),
    ):
        capsys.readouterr()
        assert cli(*command) == 2
        one_line(capsys, "m.onnx: an ONNX export runs in `lsvr predict` only")


@pytest.mark.slow  # exports alexnet (or reuses it)
def test_info_describes_an_onnx_export_and_verify_runs_its_graph(exported, tmp_path, capsys):
    _, out = exported("alexnet")
    capsys.readouterr()
    assert cli("info", out, "--verify", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "onnx export" and info["model"] == "alexnet" and info["classes"] == len(CLASSES)
    assert info["input"].startswith("images: uint8 (N, 3, 67, 67)") and info["verified"] is True
    (tmp_path / "cut.onnx").write_bytes(out.read_bytes()[:1000])
    assert cli("info", tmp_path / "cut.onnx") == 2
    one_line(capsys, "cut.onnx: not a readable ONNX model")
