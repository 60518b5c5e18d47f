"""Check that `lsvr convert` + `lsvr predict` give torchvision's own probabilities for every
zoo model's torchvision weights (issue 30, item 3).

    PYTHONPATH=src /tmp/tvenv/bin/python scripts/check_torchvision_convert.py [--out rows.jsonl] [models...]

Run by a Python with torchvision (a throwaway venv: torch 2.14.1 + torchvision 0.29.1); lsvr
runs in lsvr's own Python (`--lsvr-python`, default the checkout's .venv/bin/python, with src/
first on its path) and never imports torchvision; this script, on the torchvision side, imports
only lsvr's torchvision_weights table (plain data) and scripts/torchvision_equivalence.py's
helpers. No network: models are torchvision's builders at a seeded random init. Steps:

1. the table (lsvr.models.torchvision_weights) against torchvision's enums: file name of the
   URL, resize, crop, interpolation, mean/std of weights.transforms(), acc@1 and acc@5;
2. the reference view the CI test implements with Pillow alone (Image.resize((w, h)) at
   int(resize * long / short), crop offsets int(round((side - crop) / 2.0))) against
   weights.transforms() on every photo: equal pixels;
3. for every model and every weights enum member: torchvision's model, seeded, its norms and
   BatchNorm statistics given values (torchvision_equivalence.give_signal) and its classifier
   scaled so its logits have a standard deviation of 6 over the classes (random weights give
   near-uniform probabilities, against which a 1e-3 check says little); its state_dict saved
   under torchvision's file name; in one process of lsvr's Python (this script with
   --lsvr-side), `lsvr convert` (the weights inferred from that name) and `lsvr predict --json
   --top 1000` on the photos through lsvr's command line, and the converted model's logits of
   predict's views; compared with torchvision's model on
   weights.transforms() of each photo opened by PIL and converted to RGB.
Prints max |probability difference| and max |logit difference| per weights; exits 1 if a
probability differs by more than 1e-3 or a check of step 1 or 2 fails. Photos: matplotlib's
grace_hopper.jpg (a real photo, 512 x 600, 4:2:0) from lsvr's venv, and four made here
(a portrait at 4:2:0, a landscape at 4:4:4, a grey JPEG, a small one that is upscaled).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PASS = 1e-3  # max |probability difference| (issue 30)
TARGET_STD = 6.0  # the logits' standard deviation over the classes after the classifier is scaled


def pil_view(path: Path, resize: int, crop: int, interpolation: str) -> np.ndarray:
    """torchvision's Resize(resize) + CenterCrop(crop) of a PIL image, with Pillow alone: the
    reference tests/test_convert_zoo.py implements (checked here against torchvision)."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    long = int(resize * max(w, h) / min(w, h))
    nw, nh = (resize, long) if w <= h else (long, resize)
    mode = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[interpolation]
    pixels = np.asarray(image.resize((nw, nh), mode))
    top, left = round((nh - crop) / 2.0), round((nw - crop) / 2.0)  # CenterCrop: int(round(...)), half to even
    return pixels[top : top + crop, left : left + crop]


def make_photos(folder: Path, lsvr_python: str) -> list[Path]:
    """grace_hopper.jpg from lsvr's matplotlib, and four JPEGs of smooth seeded noise."""
    found = subprocess.run([lsvr_python, "-c", "import matplotlib; print(matplotlib.get_data_path())"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    photos = [Path(found) / "sample_data" / "grace_hopper.jpg"]
    rng = np.random.default_rng(0)
    for name, (w, h), mode, subsampling in [("portrait", (333, 500), "RGB", 2), ("landscape", (640, 427), "RGB", 0),
                                            ("grey", (300, 200), "L", 0), ("small", (150, 120), "RGB", 2)]:  # fmt: skip
        coarse = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        noise = rng.normal(0, 12, (h, w, 3))
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8)).convert(mode)
        photos.append(folder / f"{name}.jpg")
        image.save(photos[-1], quality=88, subsampling=subsampling)
    return photos


def run_lsvr(weights_file: Path, model: str, photos: list[Path], folder: Path) -> dict:
    """Run by lsvr's Python (one process a weights: lsvr's start-up is most of a small model's
    time): `lsvr convert`, then `lsvr predict --json --top 1000` through lsvr's own command line,
    and the converted model's logits of predict's views."""
    import contextlib
    import io

    import torch

    from lsvr.cli import main
    from lsvr.evaluate import eval_views
    from lsvr.inference import augment_for, load_images, load_model

    converted = folder / "converted.pt"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["convert", str(weights_file), str(converted), "--model", model])
    said = out.getvalue()
    if code:
        return {"error": f"lsvr convert exited {code}"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["predict", str(converted), *map(str, photos), "--json", "--top", "1000"])
    if code:
        return {"error": f"lsvr predict exited {code}"}
    probs = [[0.0] * 1000 for _ in photos]
    for i, prediction in enumerate(json.loads(out.getvalue())["predictions"]):
        for t in prediction["top"]:
            probs[i][t["index"]] = t["probability"]
    cpu = torch.device("cpu")
    net, state, _ = load_model(converted, cpu)
    batch, _, bad = load_images(photos, state.preprocess)
    assert batch is not None and not bad, bad
    (view, _), *_ = eval_views(augment_for(state.preprocess, cpu), batch)
    with torch.inference_mode():
        logits = net(view).float().tolist()  # (N, classes)
    converted.unlink()
    return {"convert": said.strip(), "probs": probs, "logits": logits}


def check_table(tv, weights_table) -> list[str]:
    """Step 1: one line per entry that differs from torchvision's enum."""
    from torchvision.transforms import InterpolationMode

    problems = []
    for model, entries in weights_table.items():
        for w in entries:
            enum = tv.get_weight(w.name)
            t = enum.transforms()
            mean, std = tuple(t.mean), tuple(t.std)
            if model == "googlenet":  # transform_input: the model re-normalises to (x - 0.5) / 0.5
                mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
            interp = {InterpolationMode.BILINEAR: "bilinear", InterpolationMode.BICUBIC: "bicubic"}[t.interpolation]
            ours = (w.file, w.resize, w.crop, w.interpolation, w.mean, w.std)
            theirs = (enum.url.rsplit("/", 1)[1], t.resize_size[0], t.crop_size[0], interp, mean, std)
            if ours != theirs:
                problems.append(f"{w.name}: table {ours}, torchvision {theirs}")
            metrics = enum.meta["_metrics"]["ImageNet-1K"]
            acc1, acc5 = metrics["acc@1"], metrics["acc@5"]
            published = (None, None) if acc1 != acc1 else (acc1, acc5)  # NaN: none published
            if (w.acc1, w.acc5) != published:
                problems.append(f"{w.name}: table acc {(w.acc1, w.acc5)}, torchvision {published}")
        members = [m.name for m in type(tv.get_weight(entries[0].name))]  # every member is in the table
        if members != [w.member for w in entries]:
            problems.append(f"{model}: table {[w.member for w in entries]}, torchvision {members}")
    return problems


def check_reference_view(tv, weights_table, photos: list[Path]) -> list[str]:
    """Step 2: the Pillow-only view equals weights.transforms()' pixels, for every distinct transform."""
    import torch

    problems, seen = [], set()
    for entries in weights_table.values():
        for w in entries:
            key = (w.resize, w.crop, w.interpolation)
            if key in seen:
                continue
            seen.add(key)
            t = tv.get_weight(w.name).transforms()
            for photo in photos:
                x = t(Image.open(photo).convert("RGB"))  # (3, crop, crop), normalised
                pixels = (x * torch.tensor(t.std)[:, None, None] + torch.tensor(t.mean)[:, None, None]) * 255
                ours = torch.from_numpy(pil_view(photo, *key).astype(np.float32)).permute(2, 0, 1)
                diff = (pixels - ours).abs().max().item()
                if diff > 1e-3:
                    problems.append(f"{key} {photo.name}: Pillow-only view differs from transforms() by {diff}")
    return problems


def torchvision_model(tv, model: str, w, generator):
    """torchvision's builder as it builds the model for these weights (no download), seeded and given signal."""
    import torch
    from torchvision_equivalence import give_signal

    torch.manual_seed(0)
    builder = {"alexnet_tv": "alexnet"}.get(model, model)
    kwargs: dict = {}
    if model == "googlenet":  # as its builder does for its weights; the aux heads are in the file
        kwargs = {"aux_logits": True, "transform_input": True, "init_weights": True}
    if model == "vit_b_16":
        kwargs = {"image_size": w.crop}
    net = getattr(tv, builder)(weights=None, num_classes=1000, **kwargs)
    give_signal(net, generator)
    return net


def compare(tv, model: str, w, photos: list[Path], folder: Path, lsvr_python: str) -> dict:
    import torch

    enum = tv.get_weight(w.name)
    transform = enum.transforms()
    inputs = torch.stack([transform(Image.open(p).convert("RGB")) for p in photos])  # (N, 3, crop, crop)
    net = torchvision_model(tv, model, w, torch.Generator().manual_seed(1))
    net.eval()
    with torch.no_grad():
        head = dict(net.named_modules())[next(reversed(net.state_dict())).rsplit(".", 1)[0]]  # the classifier
        if model == "googlenet":
            net.aux_logits = False  # the file holds the aux heads; the model evaluated has none (its builder)
        logits = net(inputs)
        scale = TARGET_STD / logits.std(dim=1).mean().item()
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        state = net.state_dict()
        if model == "googlenet":
            net.aux1 = net.aux2 = None
        expected = net(inputs)  # (N, 1000)
    weights_file = folder / w.file
    torch.save(state, weights_file)
    result = folder / "lsvr.json"
    subprocess.run([lsvr_python, __file__, "--lsvr-side", weights_file, "--model", model, "--out", result,
                    *photos], check=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})  # fmt: skip
    got = json.loads(result.read_text())
    weights_file.unlink()
    if "error" in got:
        raise SystemExit(f"{w.name}: {got['error']}")
    if w.name not in got["convert"]:
        raise SystemExit(f"lsvr convert {model}: took other weights than {w.name} from {w.file}: {got['convert']}")
    probs, ours = np.array(got["probs"]), np.array(got["logits"])
    theirs_p = torch.softmax(expected, dim=1).double().numpy()
    return {
        "model": model, "weights": w.name, "resize": w.resize, "crop": w.crop, "interpolation": w.interpolation,
        "max_prob_diff": float(np.abs(probs - theirs_p).max()),
        "max_logit_diff": float(np.abs(ours - expected.numpy()).max()),
        "max_logit": float(expected.abs().max()), "top_prob": [round(float(p), 4) for p in theirs_p.max(axis=1)],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="zoo models to check (default: every one with torchvision weights)")
    parser.add_argument("--lsvr-python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="the Python lsvr is installed in (it runs lsvr from src/)")  # fmt: skip
    parser.add_argument("--out", help="also append one JSON line per weights here, as each is done")
    parser.add_argument("--lsvr-side", help=argparse.SUPPRESS)  # lsvr's half, run by lsvr's Python
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lsvr_side:  # models: the photos
        weights_file = Path(args.lsvr_side)
        got = run_lsvr(weights_file, args.model, [Path(p) for p in args.models], weights_file.parent)
        Path(args.out).write_text(json.dumps(got))
        return 0

    import torch
    import torchvision
    from torchvision import models as tv

    sys.path.insert(0, str(ROOT / "scripts"))
    from lsvr.models.torchvision_weights import WEIGHTS

    names = args.models or list(WEIGHTS)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads")
    problems = check_table(tv, WEIGHTS)
    for line in problems:
        print(f"table: {line}")
    print(f"1. table against torchvision's enums: {'equal' if not problems else f'{len(problems)} differences'}")
    rows, failed = [], list(problems)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = make_photos(folder, args.lsvr_python)
        view_problems = check_reference_view(tv, WEIGHTS, photos)
        for line in view_problems:
            print(f"view: {line}")
        failed += view_problems
        print(f"2. Pillow-only view against weights.transforms() on {len(photos)} photos:"
              f" {'equal pixels' if not view_problems else 'DIFFERENT'}")  # fmt: skip
        print(f"3. {'weights':<44} {'view':>16} {'max|p diff|':>11} {'max|logit diff|':>15} {'max|logit|':>10}"
              "  top probability per photo")  # fmt: skip
        for model in names:
            for w in WEIGHTS[model]:
                start = time.perf_counter()
                row = compare(tv, model, w, photos, folder, args.lsvr_python)
                rows.append(row)
                view = f"{w.resize}/{w.crop} {w.interpolation[:4]}"
                print(f"   {w.name:<44} {view:>16} {row['max_prob_diff']:>11.2e} {row['max_logit_diff']:>15.2e}"
                      f" {row['max_logit']:>10.2f}  {row['top_prob']} ({time.perf_counter() - start:.0f} s)",
                      flush=True)  # fmt: skip
                if row["max_prob_diff"] > PASS:
                    failed.append(w.name)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    print("all pass" if not failed else f"FAILED: {len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
