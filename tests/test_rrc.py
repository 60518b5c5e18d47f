"""RandomResizedCrop and evaluation windows: the draws (inside, in bounds, deterministic,
the same at any world size), the readers that cut and resize them, evaluation as
torchvision's Resize + CenterCrop, the config keys, and training runs through them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.support import CONFIG, DEMO_DATA, cli, one_line, sets, train, write_tree

from lsvr.config_file import load_config
from lsvr.data.dataset import PreparedDataset
from lsvr.data.draws import Draws, sample_keys
from lsvr.data.loader import Loader
from lsvr.data.readers import HostReader, resize_window
from lsvr.errors import InputError
from lsvr.runs import checkpoints


def random_sizes(count: int, seed: int = 0) -> np.ndarray:
    """(count, 2) heights and widths from 1 to 400 px, some very narrow or wide."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(1, 400, count), rng.integers(1, 400, count)], axis=1)


def test_rrc_windows_lie_inside_and_within_the_area_and_ratio_bounds():
    keys, sizes = sample_keys(3, 1, np.arange(5000)), random_sizes(5000)
    draws = Draws.random_resized(keys, sizes, crop=24, scale=(0.2, 0.9), ratio=(0.75, 4 / 3))
    top, left, h, w = (t.numpy() for t in (draws.top, draws.left, draws.height, draws.width))
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= sizes[:, 0]).all() and (left + w <= sizes[:, 1]).all()
    tried = (sizes.min(axis=1) >= 40) & (h < sizes[:, 0]) & (w < sizes[:, 1])  # a fitting try, not the fallback
    # each side is a rounded sqrt(area * ratio): the bounds hold within half a pixel a side
    area = sizes.prod(axis=1)
    assert ((h + 0.5) * (w + 0.5) >= 0.2 * area)[tried].all() and ((h - 0.5) * (w - 0.5) <= 0.9 * area)[tried].all()
    assert ((w + 0.5) / (h - 0.5) >= 0.75)[tried].all() and ((w - 0.5) / (h + 0.5) <= 4 / 3)[tried].all()
    assert tried.mean() > 0.5 and 0.4 < draws.mirror.float().mean() < 0.6
    assert len(set(zip(top.tolist(), left.tolist(), strict=True))) > 1000  # spread, not one place
    again = Draws.random_resized(keys[100:200], sizes[100:200], crop=24, scale=(0.2, 0.9), ratio=(0.75, 4 / 3))
    assert all(torch.equal(a[100:200], b) for a, b in zip(as_tuple(draws), as_tuple(again), strict=True))


def as_tuple(draws: Draws) -> tuple[torch.Tensor, ...]:
    return draws.top, draws.left, draws.height, draws.width, draws.mirror


def test_rrc_falls_back_to_the_centred_window_at_the_nearest_ratio():
    # 10 x 300: no window of 8% or more of the area fits at a ratio of at most 4/3
    draws = Draws.random_resized(sample_keys(0, 0, np.arange(50)), np.array([[10, 300]] * 50), crop=8)
    assert set(draws.height.tolist()) == {10} and set(draws.width.tolist()) == {13}
    assert set(draws.left.tolist()) == {(300 - 13) // 2} and set(draws.top.tolist()) == {0}
    tall = Draws.random_resized(sample_keys(0, 0, np.arange(5)), np.array([[300, 10]] * 5), crop=8)
    assert set(tall.width.tolist()) == {10} and set(tall.height.tolist()) == {13}


def test_the_papers_crop_is_unchanged_and_upscales_small_images():
    keys = sample_keys(7, 2, np.arange(300))
    square = Draws.from_keys(keys, size=40, crop=33)
    per_sample = Draws.from_keys(keys, size=np.array([[40, 40]] * 300), crop=33)
    assert all(torch.equal(a, b) for a, b in zip(as_tuple(square), as_tuple(per_sample), strict=True))
    assert torch.equal(square.top, torch.from_numpy(keys % 8)) and not square.resized
    small = Draws.from_keys(keys[:3], size=np.array([[20, 50], [50, 20], [40, 40]]), crop=33)
    assert small.height.tolist() == [20, 20, 33] and small.width.tolist() == [20, 20, 33] and small.resized


def test_rrc_windows_are_the_same_at_world_one_and_two(tiny_data):
    ds = PreparedDataset(tiny_data)  # 160 images: 2 global batches of 64, then a resumed epoch's second
    options = {"shuffle": True, "seed": 5, "crop": 24, "window": "rrc", "workers": 1}
    one = Loader(ds, batch_size=64, **options)
    two = [Loader(ds, batch_size=32, rank=rank, world=2, **options) for rank in (0, 1)]
    for whole, *halves in zip(one.batches(1), *(loader.batches(1) for loader in two), strict=True):
        assert whole.draws.resized and whole.images.shape == (64, 24, 24, 1)
        parts = [torch.cat(pair) for pair in zip(*(as_tuple(h.draws) for h in halves), strict=True)]
        assert all(torch.equal(a, b) for a, b in zip(as_tuple(whole.draws), parts, strict=True))
        assert torch.equal(whole.images, torch.cat([h.images for h in halves]))
    resumed = next(iter(one.batches(1, start_step=1)))
    assert torch.equal(resumed.images, list(one.batches(1))[1].images)


def test_the_eval_window_is_resize_then_center_crop():
    draws = Draws.centred(np.array([[256, 256], [256, 341], [300, 200]]), resize=256, crop=224)
    assert draws.top.tolist() == [16, 16, 62] and draws.left.tolist() == [16, 58, 12]
    assert draws.height.tolist() == [224, 224, 175] and draws.height.tolist() == draws.width.tolist()
    assert not draws.mirror.any() and draws.crop == 224


def real_image(height: int, width: int) -> np.ndarray:
    """A Fashion-MNIST image (a coat, say) blown up to height x width, as RGB uint8."""
    import gzip

    with gzip.open(DEMO_DATA / "train-images-idx3-ubyte.gz") as f:
        pixels = np.frombuffer(f.read()[16 : 16 + 28 * 28], np.uint8).reshape(28, 28)
    grey = Image.fromarray(pixels).resize((width, height), Image.BICUBIC)
    return np.repeat(np.asarray(grey)[:, :, None], 3, axis=2)


@pytest.mark.parametrize(("height", "width", "resize", "crop"), [(180, 240, 64, 56), (240, 150, 100, 80)])
def test_eval_windows_match_pillows_resize_and_center_crop(height, width, resize, crop):
    image = real_image(height, width)
    draws = Draws.centred(np.array([[height, width]]), resize=resize, crop=crop)
    t, lft, side = int(draws.top[0]), int(draws.left[0]), int(draws.height[0])
    ours = resize_window(torch.from_numpy(image[t : t + side, lft : lft + side].copy()), crop).numpy()
    # torchvision: Resize(resize) on the shorter side (the longer truncated), then CenterCrop(crop)
    short = min(height, width)
    size = (resize * width // short, resize) if height == short else (resize, resize * height // short)
    pil = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    top, left = round((pil.shape[0] - crop) / 2), round((pil.shape[1] - crop) / 2)
    theirs = pil[top : top + crop, left : left + crop]
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    assert ours.shape == theirs.shape == (crop, crop, 3)
    assert difference.mean() < 1.5, difference.mean()  # window edges rounded to whole stored pixels


@pytest.fixture(scope="module")
def jpeg_set(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("rrc-jpeg")
    write_tree(root / "src", {"a": 12, "b": 12}, size=(80, 80))
    assert cli("prepare", root / "src", root / "ds", "--size", "64", "--encoding", "jpeg", "--no-progress") == 0
    return PreparedDataset(root / "ds")


def reference(ds: PreparedDataset, rows: np.ndarray, draws: Draws) -> np.ndarray:
    """Each window cut from the whole decoded image and resized: no reduced-scale decode."""
    out = []
    for j, i in enumerate(rows.tolist()):
        t, lft, h, w = (int(v[j]) for v in (draws.top, draws.left, draws.height, draws.width))
        out.append(resize_window(torch.from_numpy(ds.image(i)[t : t + h, lft : lft + w].copy()), draws.crop).numpy())
    return np.stack(out)


def test_the_host_reader_decodes_at_reduced_scale_and_resizes(jpeg_set):
    from tests.test_loader import libjpeg_decoder

    rows = np.arange(24)
    draws = Draws.random_resized(sample_keys(1, 0, rows), jpeg_set.sizes(rows), crop=12, scale=(0.5, 1.0))
    assert (draws.height >= 24).all()  # every window decodes at 1/2 or less
    host = Loader(jpeg_set, batch_size=24, shuffle=False, crop=12, window="rrc", workers=1)
    batch = host.reader.read(rows, draws)
    expected = reference(jpeg_set, rows, draws)
    difference = np.abs(batch.images.numpy().astype(int) - expected.astype(int))
    assert batch.images.shape == (24, 12, 12, 3) and difference.mean() < 4, difference.mean()
    device = Loader(jpeg_set, batch_size=24, shuffle=False, crop=12, window="rrc", decode="device",
                    decoder=libjpeg_decoder(3))  # fmt: skip
    on_device = device.reader.read(rows, draws)
    assert np.array_equal(on_device.images.numpy(), expected)  # whole decodes there: the reference itself


class VaryingShapes:
    """A stand-in for a set of varying image shapes (prepare --resize short), raw in memory:
    what the readers and the loader use of one."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images_, self.path, self.encoding = images, Path("varying"), "raw"
        self.shape, self.labels = (0, 0, 3), np.zeros(len(images), np.int64)

    def __len__(self) -> int:
        return len(self.images_)

    def sizes(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self.images_[i].shape[:2] for i in rows], np.int64).reshape(len(rows), 2)

    def image(self, i: int, *, scale: int = 1) -> np.ndarray:
        return self.images_[i]


@pytest.mark.parametrize("window", ["crop", "rrc", "centred"])
def test_images_smaller_than_the_window_are_upscaled(window):
    rng = np.random.default_rng(0)
    shapes = [(10, 40), (40, 10), (50, 70), (8, 8), (100, 30)]
    ds = VaryingShapes([rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes])
    loader = Loader(ds, batch_size=5, shuffle=False, crop=32, window=window, resize=36, workers=1)  # rows 0..4
    batch = next(iter(loader.batches(0)))
    assert batch.images.shape == (5, 32, 32, 3) and batch.draws.resized
    # images of one colour stay that colour, whatever the window and however far it is blown up
    flat = VaryingShapes([np.full((*s, 3), 77, np.uint8) for s in shapes])
    again = HostReader(flat, loader._pool, shuffle=True).read(np.arange(5), batch.draws)
    assert again.images.shape == (5, 32, 32, 3) and (again.images == 77).all()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("data.rrc_scale", "[0.5, 0.2]", "0 < low <= high <= 1.0"), ("data.rrc_scale", "[0.0, 1.0]", "data.rrc_scale"),
     ("data.rrc_scale", "[0.5, 1.5]", "data.rrc_scale"), ("data.rrc_ratio", "[2.0, 1.0]", "0 < low <= high"),
     ("data.rrc_ratio", "[1.0]", "data.rrc_ratio"), ("data.augment", "mixup", "one of crop, rrc")],
)  # fmt: skip
def test_rrc_keys_out_of_range_are_refused(key, value, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        load_config(None, [f"{key}={value}"])
    assert load_config(None, ["data.rrc_ratio=[0.5, 2.0]"]).data.rrc_ratio == [0.5, 2.0]


def test_mean_image_with_rrc_is_refused_before_the_first_step(tiny_data, tmp_path, capsys):
    code = train(tmp_path / "run", tiny_data, **{"data.augment": "rrc", "data.normalize": "mean_image"})
    assert code == 2 and not (tmp_path / "run" / "checkpoints").exists()
    one_line(capsys, "data.normalize=mean_image", "data.augment=rrc", "data.normalize=channel")


def test_ten_crops_on_resized_eval_windows_are_refused(tiny_data):
    from lsvr.evaluate import eval_loader
    from lsvr.preprocess import Preprocess

    ds = PreparedDataset(tiny_data)
    pre = Preprocess.from_dataset(ds, crop=28, normalize="channel")
    assert eval_loader(ds, pre, crops=10, batch_size=8).crop is None  # stored size: whole images, as before
    with pytest.raises(InputError, match="ten-crop evaluation needs images stored at the evaluation size"):
        eval_loader(ds, replace_eval(pre, 36), crops=10, batch_size=8)
    with pytest.raises(InputError, match="a per-pixel mean only fits the stored images"):
        eval_loader(ds, replace_eval(pre, 36, normalize="mean_image"), batch_size=8)


def replace_eval(pre, eval_size: int, **other):
    import dataclasses

    return dataclasses.replace(pre, eval_size=eval_size, **other)


@pytest.mark.slow
def test_a_training_run_through_rrc_records_its_eval_view(tiny_data, tmp_path, capsys):
    extra = {"data.augment": "rrc", "data.holdout": 32, "model.name": "resnet18", "data.crop": 24,
             "train.epochs": 1, "train.max_steps": 3, "checkpoint.every_steps": 0}  # fmt: skip
    assert train(tmp_path / "run", tiny_data, **extra) == 0, capsys.readouterr().err[-2000:]
    pre = checkpoints.read(checkpoints.find(tmp_path / "run")).preprocess
    assert pre.augment == "rrc" and pre.eval_crop == 24 and pre.eval_size == round(24 * 256 / 224)
    assert pre.interpolation == "bilinear"
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["images"] for m in metrics if m["kind"] == "val"] == [32]


def short_sets_exist() -> bool:
    from lsvr.data import prepare

    return "short" in getattr(prepare, "RESIZE_POLICIES", ())


@pytest.mark.skipif(not short_sets_exist(), reason="needs prepare --resize short")
@pytest.mark.parametrize(
    ("extra", "needles"),
    [({"data.normalize": "mean_image"}, ("data.normalize=mean_image", "varying shape", "data.normalize=channel")),
     ({"data.crop": 40}, ("data.crop=40 is larger than the images", "shorter side 32"))],
)  # fmt: skip
def test_a_set_of_varying_shapes_refuses_a_mean_image_and_too_large_a_crop(tmp_path, capsys, extra, needles):
    write_tree(tmp_path / "src", {"a": 20, "b": 20}, size=(60, 45))
    assert cli("prepare", tmp_path / "src", tmp_path / "ds", "--size", "32", "--resize", "short", "--no-progress") == 0
    capsys.readouterr()
    assert train(tmp_path / "run", tmp_path / "ds", **{"data.crop": 28, **extra}) == 2
    one_line(capsys, *needles)


@pytest.mark.slow
def test_resnet18_learns_fashion_mnist_through_rrc(tmp_path, capsys):
    """The issue's learning check: resnet18 through RandomResizedCrop (area 35-100%) to 40 px
    of the 64 px embedded set beats 4x chance on its held-out slice, and its loss halves, in
    80 steps of 64 (measured: loss 2.64 over the first 10 steps, 0.97 over the last, 69.8%
    top-1; 99 s wall on 2 busy cores)."""
    data = tmp_path / "fm64"
    assert cli("prepare", DEMO_DATA, data, "--size", "64", "--no-progress") == 0
    settings = {"model.name": "resnet18", "data.crop": 40, "data.augment": "rrc", "data.rrc_scale": "[0.35, 1.0]",
                "data.normalize": "channel", "data.holdout": 500, "train.global_batch": 64, "train.max_steps": 80,
                "train.epochs": 1, "optim.lr": 0.05, "optim.weight_decay": 0.0001, "train.threads": 2,
                "train.deterministic": "false", "checkpoint.every_steps": 0, "train.log_every": 10}  # fmt: skip
    assert cli("train", CONFIG, "--out", tmp_path / "run", *sets(data / "train", **settings)) == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m["kind"] == "train"]
    (val,) = [m for m in metrics if m["kind"] == "val"]
    assert val["images"] == 500 and val["top1"] > 40.0, val
    assert losses[-1] < losses[0] / 2, losses


@pytest.mark.parametrize("normalize", ["mean_image", "channel"])
def test_eval_windows_at_the_stored_size_score_as_the_old_centre_crop(tiny_data, normalize):
    from lsvr.data.augment import Augment
    from lsvr.evaluate import eval_loader, evaluate
    from lsvr.models.registry import build_model
    from lsvr.preprocess import Preprocess

    ds = PreparedDataset(tiny_data)
    torch.manual_seed(0)
    model = build_model("alexnet_small", num_classes=10, in_channels=1, crop=28, dropout=0.0, width=0.25)
    augment = Augment(mean_image=ds.mean_image, channel_mean=ds.channel_mean, channel_std=ds.channel_std, crop=28,
                      normalize=normalize)  # fmt: skip
    pre = Preprocess.from_dataset(ds, crop=28, normalize=normalize)
    windows = eval_loader(ds, pre, batch_size=50, workers=1)
    assert windows.window == "centred" and windows.crop == 28
    whole = Loader(ds, batch_size=50, shuffle=False, workers=1)  # whole images, Augment.center: as before
    assert evaluate(model, windows, augment) == evaluate(model, whole, augment)


@pytest.fixture(scope="module")
def short_set(tmp_path_factory) -> Path:
    """40 JPEGs of varying shape, shorter side 32, the longer capped at 48 (some then shorter)."""
    root = tmp_path_factory.mktemp("short")
    write_tree(root / "wide", {"a": 10, "b": 10}, size=(60, 45))
    write_tree(root / "tall", {"a": 10, "b": 10}, size=(30, 90), seed=1)
    for name in ("a", "b"):
        for i, path in enumerate(sorted((root / "tall" / name).iterdir())):
            path.rename(root / "wide" / name / f"tall{i:03d}.JPEG")
    assert cli("prepare", root / "wide", root / "ds", "--size", "32", "--resize", "short", "--max-size", "48",
               "--no-progress") == 0  # fmt: skip
    return root / "ds"


def test_device_decode_cuts_and_resizes_images_of_varying_shape(short_set):
    from tests.test_loader import libjpeg_decoder

    ds = PreparedDataset(short_set)
    assert len({tuple(s) for s in ds.sizes(np.arange(len(ds))).tolist()}) > 1
    for window in ("crop", "rrc"):
        options = {"batch_size": 8, "shuffle": True, "seed": 2, "crop": 28, "window": window, "workers": 1}
        host, device = Loader(ds, **options), Loader(ds, decode="device", decoder=libjpeg_decoder(3), **options)
        for a, b in zip(host.batches(0), device.batches(0), strict=True):
            assert a.images.shape == b.images.shape == (8, 28, 28, 3)
            # the host decodes at reduced scale where a window allows, the stand-in never
            assert np.abs(a.images.numpy().astype(int) - b.images.numpy().astype(int)).mean() < 4


@pytest.mark.slow
@pytest.mark.parametrize("augment", ["crop", "rrc"])
def test_a_set_of_varying_shapes_trains_and_evaluates_through_windows(short_set, tmp_path, capsys, augment):
    extra = {"data.augment": augment, "data.crop": 28, "data.holdout": 8, "data.normalize": "channel",
             "train.global_batch": 8, "train.epochs": 1, "train.max_steps": 2, "checkpoint.every_steps": 0}  # fmt: skip
    assert train(tmp_path / "run", short_set, **extra) == 0, capsys.readouterr().err[-2000:]
    pre = checkpoints.read(checkpoints.find(tmp_path / "run")).preprocess
    assert pre.resize == "short" and pre.eval_crop == 28 and pre.eval_size == 32  # alexnet_small: the stored side
    capsys.readouterr()
    assert cli("eval", tmp_path / "run", short_set, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 40 and (result["resize"], result["crop"]) == (32, 28)
    assert cli("eval", tmp_path / "run", short_set, "--crops", "10") == 2
    one_line(capsys, "ten-crop evaluation needs images stored at the evaluation size")


@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_normalisation_is_the_plain_formula_in_either_layout(channels_last):
    from lsvr.data.augment import Augment

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 9, 9, 3), dtype=np.uint8))
    mean, std = [120.0, 110.0, 100.0], [60.0, 55.0, 50.0]
    augment = Augment(mean_image=None, channel_mean=mean, channel_std=std, crop=9, normalize="channel",
                      channels_last=channels_last)  # fmt: skip
    draws = Draws.fixed(4, top=0, left=0, mirror=True, crop=9, device=torch.device("cpu"))
    expected = ((images.flip(2).float() - torch.tensor(mean)) * (1 / torch.tensor(std))).permute(0, 3, 1, 2)
    out = augment.apply(images.clone(), draws)
    assert out.shape == (4, 3, 9, 9) and torch.equal(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
