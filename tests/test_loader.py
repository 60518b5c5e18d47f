import numpy as np
import pytest
import simplejpeg
import torch
from tests.support import cli, write_tree

from lsvr.bench.photos import write_photos
from lsvr.data.augment import Augment
from lsvr.data.dataset import PreparedDataset
from lsvr.data.draws import Draws
from lsvr.data.loader import Loader, sample_keys
from lsvr.errors import InputError


@pytest.fixture(scope="module")
def train_set(demo_prepared) -> PreparedDataset:
    return PreparedDataset(demo_prepared / "train")


def epoch_rows(loader: Loader, epoch: int) -> list[int]:
    """Dataset rows of an epoch, recovered from the labels and pixels is indirect; use the order."""
    order = loader.epoch_order(epoch)
    rows = []
    for batch in loader.batches(epoch):
        where = loader.rank_slice(batch.step, len(order))
        assert torch.equal(batch.labels, torch.from_numpy(loader.dataset.labels[order[where]]))
        assert torch.equal(batch.images, torch.from_numpy(loader.dataset.read(order[where])))
        rows.extend(order[where].tolist())
    return rows


def test_every_image_once_per_epoch_deterministic_and_reshuffled(train_set):
    loader = Loader(train_set, batch_size=1000, shuffle=True, seed=3, workers=2, prefetch=3)
    first = epoch_rows(loader, 0)
    assert sorted(first) == list(range(len(train_set)))  # 10,000 divides by 1,000: nothing dropped
    assert first == epoch_rows(Loader(train_set, batch_size=1000, shuffle=True, seed=3), 0)
    assert first != epoch_rows(loader, 1)
    assert first != epoch_rows(Loader(train_set, batch_size=1000, shuffle=True, seed=4), 0)


def test_rank_slices_are_disjoint_and_make_the_global_batch(train_set):
    whole = Loader(train_set, batch_size=64, shuffle=True, seed=1)
    ranks = [Loader(train_set, batch_size=32, shuffle=True, seed=1, rank=r, world=2) for r in range(2)]
    order = whole.epoch_order(0)
    for step in (0, 5, len(whole) - 1):
        halves = [order[r.rank_slice(step, len(order))] for r in ranks]
        assert len(halves[0]) == len(halves[1]) == 32
        assert not set(halves[0]) & set(halves[1])
        assert np.array_equal(np.concatenate(halves), order[whole.rank_slice(step, len(order))])


def test_evaluation_covers_every_image_once_across_ranks(train_set):
    rows = np.arange(1001)  # does not divide by the world size or the batch
    seen = []
    for rank in range(3):
        loader = Loader(train_set, batch_size=100, shuffle=False, indices=rows, rank=rank, world=3)
        seen += [n for b in loader.batches(0) for n in [len(b.labels)]]
    assert sum(seen) == 1001


def test_resume_position_replays_the_same_batches(train_set):
    loader = Loader(train_set, batch_size=500, shuffle=True, seed=0)
    full = [b.images for b in loader.batches(2)]
    rest = [b.images for b in loader.batches(2, start_step=7)]
    assert len(rest) == len(full) - 7 and all(torch.equal(a, b) for a, b in zip(full[7:], rest, strict=True))


def test_crops_stay_inside_and_flip_mirrors():
    size, crop, n = 12, 8, 400
    # pixel value = column index, so a crop's first and last columns give its offset and direction
    images = torch.arange(size, dtype=torch.uint8).repeat(n, size, 1)[..., None]  # (n, H, W, 1)
    zero = np.zeros((size, size, 1), np.float32)
    augment = Augment(mean_image=zero, channel_mean=[0.0], channel_std=[1.0], crop=crop, normalize="mean_image")
    draws = Draws.from_keys(sample_keys(0, 0, np.arange(n)), size=size, crop=crop)
    out = augment.apply(draws.cut(images), draws)  # (n, 1, crop, crop)
    assert out.shape == (n, 1, crop, crop)
    left, right = out[:, 0, 0, 0], out[:, 0, 0, -1]
    assert torch.all(torch.minimum(left, right) >= 0) and torch.all(torch.maximum(left, right) <= size - 1)
    assert torch.all((left - right).abs() == crop - 1)
    mirrored = (left > right).float().mean().item()
    assert 0.4 < mirrored < 0.6  # about half flipped
    assert len(set(torch.minimum(left, right).tolist())) == size - crop + 1  # every offset is drawn
    centre = augment.center(images)
    assert torch.all(centre[:, 0, 0, 0] == (size - crop) // 2)


def test_mean_image_is_subtracted_at_the_source_positions():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (5, 10, 10, 3), dtype=np.uint8))
    mean = rng.random((10, 10, 3)).astype(np.float32) * 100
    augment = Augment(mean_image=mean, channel_mean=[0] * 3, channel_std=[1] * 3, crop=6, normalize="mean_image")
    keys = sample_keys(1, 0, np.arange(5))
    draws = Draws.from_keys(keys, size=10, crop=6)
    out = augment.apply(draws.cut(images), draws)
    expected = images.float() - torch.from_numpy(mean)  # subtract first, then crop and mirror
    for i, key in enumerate(keys.tolist()):
        top, left, flip = key % 5, (key // 65536) % 5, (key // 2**32) % 2
        patch = expected[i, top : top + 6, left : left + 6].permute(2, 0, 1)
        assert torch.allclose(out[i], patch.flip(-1) if flip else patch)
    ten = augment.ten_crops(images)
    assert len(ten) == 10 and all(v.shape == (5, 3, 6, 6) for v in ten)


def same_draws(a: Draws | None, b: Draws | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.crop == b.crop and all(torch.equal(x, y.cpu()) for x, y in zip(a.tensors(), b.tensors(), strict=True))


def test_draws_follow_the_keys_and_flip():
    keys = sample_keys(7, 2, np.arange(300))
    draws = Draws.from_keys(keys, size=40, crop=33)
    assert torch.equal(draws.top, torch.from_numpy(keys % 8))
    assert torch.equal(draws.left, torch.from_numpy(keys // 65536 % 8))
    assert torch.equal(draws.mirror, torch.from_numpy(keys // 2**32 % 2 == 1))
    assert 0.4 < draws.mirror.float().mean() < 0.6
    unflipped = Draws.from_keys(keys, size=40, crop=33, flip=False)
    assert not unflipped.mirror.any() and torch.equal(unflipped.top, draws.top)
    kept = draws.select(np.arange(300) % 3 == 0)
    assert len(kept) == 100 and torch.equal(kept.left, draws.left[::3])


def test_a_loader_without_flip_draws_no_mirror(train_set):
    loader = Loader(train_set, batch_size=500, shuffle=True, seed=2, crop=20, flip=False)
    flipped = Loader(train_set, batch_size=500, shuffle=True, seed=2, crop=20)
    for a, b in zip(loader.batches(0), flipped.batches(0), strict=True):
        assert not a.draws.mirror.any() and torch.equal(a.images, b.images) and torch.equal(a.draws.top, b.draws.top)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_crops_cut_by_the_loader_equal_the_augment_gather(tmp_path, encoding):
    write_tree(tmp_path / "src", {"a": 20, "b": 20}, size=(50, 40))
    assert cli("prepare", tmp_path / "src", tmp_path / "ds", "--size", "36", "--encoding", encoding,
               "--no-progress") == 0  # fmt: skip
    ds = PreparedDataset(tmp_path / "ds")
    augment = Augment(mean_image=ds.mean_image, channel_mean=ds.channel_mean, channel_std=ds.channel_std, crop=30)
    whole = Loader(ds, batch_size=8, shuffle=True, seed=5, workers=2)
    cut = Loader(ds, batch_size=8, shuffle=True, seed=5, workers=2, crop=30)
    for a, b in zip(whole.batches(1), cut.batches(1), strict=True):
        assert a.draws is None and b.images.shape == (8, 30, 30, 3) and len(b.draws) == 8
        assert torch.equal(b.images, b.draws.cut(a.images))
        # to the bit: the whole image minus the whole mean image, then cut and mirrored
        expected = a.images.float() - torch.from_numpy(ds.mean_image)
        out = augment.train(b)  # mirrors b.images in place (CPU)
        for i, (top, left, flip) in enumerate(zip(*(v.tolist() for v in b.draws.tensors()), strict=True)):
            patch = expected[i, top : top + 30, left : left + 30]
            expected_i = (patch.flip(1) if flip else patch).permute(2, 0, 1)
            assert torch.equal(out[i], expected_i)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches_and_reuse_pinned_buffers(train_set):
    cpu = Loader(train_set, batch_size=250, shuffle=True, seed=1, crop=28)
    gpu = Loader(train_set, batch_size=250, shuffle=True, seed=1, crop=28, device="cuda", prefetch=3)
    for epoch in range(2):  # the second epoch runs on buffers handed back after their copies
        for a, b in zip(cpu.batches(epoch), gpu.batches(epoch), strict=True):
            assert b.images.is_cuda and torch.equal(a.images, b.images.cpu())
            assert torch.equal(a.labels, b.labels.cpu()) and same_draws(a.draws, b.draws)
    assert gpu._pool.free and all(buffer.is_pinned() for buffer, _ in gpu._pool.free)


def libjpeg_decoder(channels: int):
    """A stand-in for nvJPEG with the host's decoder: the device path's gathering, stacking
    and cropping are then checked to the bit against the host path."""
    colorspace = "GRAY" if channels == 1 else "RGB"

    def decode(data: list[torch.Tensor]) -> list[torch.Tensor]:
        pixels = [simplejpeg.decode_jpeg(d.numpy(), colorspace=colorspace) for d in data]
        return [torch.from_numpy(p).permute(2, 0, 1) for p in pixels]

    return decode


@pytest.fixture(scope="module")
def jpeg_set(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("jpeg")
    write_tree(root / "src", {"a": 20, "b": 21}, size=(50, 40))
    assert cli("prepare", root / "src", root / "ds", "--size", "36", "--encoding", "jpeg", "--no-progress") == 0
    return PreparedDataset(root / "ds")


@pytest.mark.parametrize("crop", [None, 30])
def test_device_decode_gives_the_host_path_batches(jpeg_set, crop):
    host = Loader(jpeg_set, batch_size=8, shuffle=True, seed=3, workers=2, crop=crop)
    device = Loader(jpeg_set, batch_size=8, shuffle=True, seed=3, workers=2, crop=crop, decode="device",
                    decoder=libjpeg_decoder(3))  # fmt: skip
    for epoch in range(2):
        pairs = list(zip(host.batches(epoch), device.batches(epoch), strict=True))
        assert len(pairs) == 5
        for a, b in pairs:
            assert b.images.shape == a.images.shape and torch.equal(a.images, b.images)
            assert torch.equal(a.labels, b.labels) and same_draws(a.draws, b.draws)


def test_device_decode_needs_a_jpeg_set(train_set):
    with pytest.raises(InputError, match="needs a JPEG-encoded set"):
        Loader(train_set, batch_size=8, shuffle=True, decode="device", decoder=libjpeg_decoder(1))


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory) -> PreparedDataset:
    """Photo-like JPEGs (the bench's 1/f fields with soft shapes), prepared at 96 px."""
    root = tmp_path_factory.mktemp("photos")
    write_photos(root / "src", 16, classes=2)
    assert cli("prepare", root / "src", root / "ds", "--size", "96", "--encoding", "jpeg", "--no-progress") == 0
    return PreparedDataset(root / "ds")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nvjpeg_batches_match_the_host_decoder(photo_set):
    """On photos, not noise: nvJPEG's chroma upsampling differs from libjpeg-turbo's, which on
    noise images (every 2x2 block's chroma unlike its neighbours') moves pixels by tens."""
    pytest.importorskip("torchvision")
    host = Loader(photo_set, batch_size=8, shuffle=True, seed=3, crop=80)
    gpu = Loader(photo_set, batch_size=8, shuffle=True, seed=3, crop=80, device="cuda", decode="device")
    for a, b in zip(host.batches(0), gpu.batches(0), strict=True):
        assert b.images.is_cuda and b.images.shape == a.images.shape and same_draws(a.draws, b.draws)
        difference = a.images.float() - b.images.cpu().float()
        assert difference.abs().mean() < 2.5 and difference.mean().abs() < 1  # IDCTs and upsampling differ


def test_device_decode_without_torchvision_is_a_clear_error(jpeg_set):
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="needs torchvision"):
            Loader(jpeg_set, batch_size=8, shuffle=True, decode="device")
    else:
        pytest.skip("torchvision is installed")
