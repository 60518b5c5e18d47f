"""`lsvr predict` in batches (lsvr.predict_batches): a batch scores each image as it would be
scored alone, a JPEG decodes at the reduced scale only where the record allows it, the results
come back in the order the files were given with bad files named where they stood, and the
decoding pool is as large as the CPUs other work leaves free."""

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from tests.support import CONFIG, cli, sets, write_tree

from lsvr import cpus, inference, predict_batches
from lsvr.data.image import resize, to_channels
from lsvr.evaluate import eval_views
from lsvr.inference import augment_for, eval_batch, load_images, load_model
from lsvr.predict_batches import loaded_batches, scored_batches

LARGE = [(400, 300), (300, 400), (360, 330), (512, 384), (330, 500)]  # (width, height): each shrinks 1/8 to 32 px


@pytest.fixture(scope="module")
def run_and_photos(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A tiny model trained on 32 px images, and photo-sized JPEGs it has not seen."""
    folder = tmp_path_factory.mktemp("predict_batches")
    tree = write_tree(folder / "tree", {"a": 20, "b": 20})
    assert cli("prepare", tree, folder / "set", "--size", "32", "--no-progress") == 0
    assert cli("train", CONFIG, "--out", folder / "run", *sets(folder / "set", **{"train.max_steps": 2})) == 0
    rng = np.random.default_rng(0)
    photos = []
    for i, (width, height) in enumerate(LARGE):
        smooth = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3)).repeat(16, 0).repeat(16, 1)
        pixels = np.clip(smooth[:height, :width] + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
        photos.append(folder / f"photo{i}.jpg")
        photos[-1].write_bytes(simplejpeg.encode_jpeg(pixels, quality=90, colorsubsampling="420"))
    return folder / "run", photos


@pytest.fixture
def one_thread():
    """torch on one thread, as a test of bits wants it; set back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def logits_of(run: Path, reduced: bool):
    model, state, _ = load_model(run, torch.device("cpu"))
    pre = dataclasses.replace(state.preprocess, reduced_decode=reduced)
    augment = augment_for(pre, torch.device("cpu"))

    @torch.inference_mode()
    def score(batch):  # the logits of the view predict scores (no flip, no shift: the record's)
        ((view, _),) = eval_views(augment, batch, flip=pre.eval_flip, shift=pre.eval_shift)
        return model(view)

    return pre, score


@pytest.mark.parametrize("reduced", [False, True], ids=["full_decodes", "reduced_decodes"])
def test_a_batch_scores_each_image_as_it_would_be_scored_alone(run_and_photos, one_thread, reduced):
    run, photos = run_and_photos
    pre, score = logits_of(run, reduced)
    seen = []

    def watched(batch):
        seen.append(batch)
        return score(batch)

    batches = list(scored_batches(photos, pre, watched, batch=3, threads=3))
    assert [len(b.paths) for b in batches] == [3, 2]
    alone = [load_images([p], pre)[0] for p in photos]  # each file read and cut on its own
    assert torch.equal(torch.cat([b.images for b in seen]), torch.cat([a.images for a in alone]))  # bit for bit
    together = torch.cat([b.probs for b in batches])
    sequential = [load_images(photos[i : i + 3], pre)[0] for i in (0, 3)]  # predict before: no pool, no overlap
    assert torch.equal(together, torch.cat([score(b) for b in sequential]))  # the logits too
    # the model called on one image at a time: another kernel for a batch of 1, float rounding apart
    single = torch.cat([score(a) for a in alone])
    assert torch.equal(single.argmax(1), together.argmax(1)) and (single - together).abs().max() < 1e-5


def test_reduced_decode_is_the_jpeg_decoded_at_its_reduced_scale_and_only_where_the_record_allows(run_and_photos):
    run, photos = run_and_photos
    _, state, _ = load_model(run, torch.device("cpu"))
    assert state.preprocess.size == 32 and state.preprocess.reduced_decode  # the default: prepare's decode
    for reduced in (True, False):
        pre = dataclasses.replace(state.preprocess, reduced_decode=reduced)
        with predict_batches.ThreadPoolExecutor(2) as pool:
            (batch, good, bad), = loaded_batches(photos, pre, batch=len(photos), pool=pool)  # fmt: skip
        assert good == photos and bad == []
        expected = []
        for (width, height), path in zip(LARGE, photos, strict=True):
            scale = 8 if reduced else 1  # the largest of 1/2, 1/4, 1/8 keeping the shorter side >= 32
            pixels = simplejpeg.decode_jpeg(path.read_bytes(), min_width=width // scale, min_height=height // scale)
            assert pixels.shape[:2] == (-(-height // scale), -(-width // scale))
            expected.append(to_channels(resize(pixels, pre.size, pre.resize), pre.channels))
        assert torch.equal(batch.images, eval_batch(expected, pre).images)
        if reduced:
            reduced_pixels = batch.images
    assert not torch.equal(batch.images, reduced_pixels)  # the two decodes differ: both were tested


def test_results_come_in_the_order_given_whichever_file_decodes_first(run_and_photos, monkeypatch, tmp_path):
    run, photos = run_and_photos
    _, state, _ = load_model(run, torch.device("cpu"))
    (tmp_path / "notes.jpg").write_text("not an image")
    paths = [photos[0], tmp_path / "notes.jpg", *photos[1:3], tmp_path / "missing.jpg", *photos[3:]]
    order, load_image = [], inference.load_image
    third_done = threading.Event()

    def slow_first(path, pre):  # the first file's decode ends only after the third's
        if path == paths[0]:
            third_done.wait(timeout=30)
        pixels = load_image(path, pre)
        order.append(path)
        if path == paths[2]:
            third_done.set()
        return pixels

    monkeypatch.setattr(inference, "load_image", slow_first)
    batches = list(scored_batches(paths, state.preprocess, lambda b: b.images.float().mean((1, 2, 3)), batch=3,
                                  threads=3))  # fmt: skip
    assert order.index(paths[2]) < order.index(paths[0])  # the pool finished them out of order
    assert [p for b in batches for p in b.paths] == photos
    bad = [line for b in batches for line in b.bad]
    assert len(bad) == 2 and bad[0].startswith(f"{tmp_path / 'notes.jpg'}:") and "missing.jpg: no such" in bad[1]
    monkeypatch.setattr(inference, "load_image", load_image)
    means = torch.cat([b.probs for b in batches])
    alone = torch.cat([load_images([p], state.preprocess)[0].images.float().mean((1, 2, 3)) for p in photos])
    assert torch.equal(means, alone)


def test_bad_files_among_good_ones_across_batches_are_named_as_before(run_and_photos, tmp_path, capsys):
    run, photos = run_and_photos
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = photos[1].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    args = [photos[0], tmp_path / "missing.jpg", photos[1], tmp_path / "broken.jpg", tmp_path / "truncated.jpg",
            photos[2]]  # fmt: skip
    outs = {}
    for batch in ("2", "64"):
        capsys.readouterr()
        assert cli("predict", run, *args, "--json", "--batch", batch) == 2
        captured = capsys.readouterr()
        outs[batch] = json.loads(captured.out)["predictions"]
        assert [p["image"] for p in outs[batch]] == [str(p) for p in photos[:3]]
        errors = [line for line in captured.err.splitlines() if "error" in line]
        assert len(errors) == 3, captured.err
        assert errors[0] == f"lsvr predict: error: {tmp_path / 'missing.jpg'}: no such image file"
        assert "broken.jpg: bad JPEG" in errors[1] and "truncated.jpg: bad JPEG" in errors[2]
        assert "3 of 6 images could not be read" in captured.err
    # the probabilities of a batch of 1 or 2 against one of 3: within float rounding of each other
    for a, b in zip(outs["2"], outs["64"], strict=True):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        assert max(abs(x["probability"] - y["probability"]) for x, y in zip(a["top"], b["top"], strict=True)) < 1e-6


def test_the_decoding_pool_is_as_large_as_the_cpus_other_work_leaves_free(run_and_photos, monkeypatch):
    run, photos = run_and_photos
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(6)))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(cpus, "busy_cpus", lambda seconds=0.2: 2.2)  # two CPUs busy with other work
    assert predict_batches.decode_threads() == 4
    sizes, executor = [], predict_batches.ThreadPoolExecutor

    def recorded(workers, **kwargs):
        sizes.append(workers)
        return executor(workers, **kwargs)

    monkeypatch.setattr(predict_batches, "ThreadPoolExecutor", recorded)
    _, state, _ = load_model(run, torch.device("cpu"))
    list(scored_batches(photos, state.preprocess, lambda b: b.images, batch=2))
    assert 4 in sizes and max(sizes) == 4  # the decoding pool (and one thread that reads ahead)
    threads = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert predict_batches.take_free_cpus() == 4 and torch.get_num_threads() == 4  # torch's too
        torch.set_num_threads(1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's count is kept
        assert predict_batches.take_free_cpus() == 4 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_the_activations_of_one_batch_reuse_the_memory_of_the_one_before(run_and_photos):
    """Large blocks come from the heap while predict runs: no page faults the second time, where
    glibc's mmap hands a 64 MB block back on free and faults its 16,384 pages in afresh."""
    import platform
    import resource

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc settings")
    run, photos = run_and_photos
    _, state, _ = load_model(run, torch.device("cpu"))

    def faults_of_a_block() -> int:
        torch.ones(16 << 20).sum()  # 64 MB: above any mmap threshold of glibc's
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 << 20).sum()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    inside = []
    list(scored_batches(photos[:2], state.preprocess, lambda b: inside.append(faults_of_a_block()), batch=2))
    assert inside[0] < 1000
