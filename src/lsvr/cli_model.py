"""The commands that use a trained model: `lsvr eval`, `lsvr predict`, `lsvr export`.

lsvr eval CHECKPOINT DATASET [--resize N] [--crop N] [--crops 1|10] [--[no-]flip] [--shift N] [--allow-mismatch]
          [--json] [--report DIR]
lsvr predict CHECKPOINT IMAGE|FOLDER... [--top 5] [--batch 64] [--json]
lsvr export CHECKPOINT OUT.safetensors|OUT.onnx [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lsvr.cli_args import Whole, image_side, non_negative_int, positive_int
from lsvr.config import Device, choices
from lsvr.errors import InputError
from lsvr.folders import check_writable

CHECKPOINT_HELP = "a checkpoint .pt, a run folder (its latest checkpoint) or a .safetensors export"
DEVICE_HELP = "where the model runs (default auto: a CUDA device when there is one, else the CPU)"


def add_model_commands(sub: Any) -> None:
    """eval, predict and export: the commands that use a trained model (cli_model)."""
    p = sub.add_parser("eval", help="top-1/top-5 of a checkpoint on a prepared dataset")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("dataset", help="a prepared dataset folder (lsvr prepare), e.g. the val split")
    p.add_argument("--resize", type=image_side, metavar="N",
                   help="shorter side before the crop (default: the checkpoint's)")  # fmt: skip
    p.add_argument("--crop", type=image_side, metavar="N", help="centre crop side (default: the checkpoint's)")
    p.add_argument("--crops", type=int, choices=(1, 10), default=1,
                   help="1: the centre crop; 10: four corners, the centre and their mirrors (default 1)")  # fmt: skip
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, help="and the mirror (default: the run's)")
    p.add_argument("--shift", type=non_negative_int, metavar="N",
                   help="and crops moved N px up-left, down-right: half the weight (default: the run's)")  # fmt: skip
    p.add_argument("--batch", type=positive_int, default=256, help="images scored at a time (default 256)")
    p.add_argument("--threads", type=Whole(0, 1024), default=0,
                   help="CPU threads of torch's operations (default 0: torch's choice, one per core)")  # fmt: skip
    p.add_argument("--device", choices=choices(Device), default="auto", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="the result as one JSON object on stdout")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="score a set prepared with another --resize than the checkpoint's (warns)")  # fmt: skip
    p.add_argument("--report", metavar="DIR",
                   help="also write a report there: DIR/index.html (confusion matrix, per-class table, top losses,"
                        " calibration), report.json, per_class.csv; DIR new, empty or an earlier report's")  # fmt: skip
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top classes of image files")
    p.add_argument("checkpoint", help="a checkpoint .pt, a run folder (its latest checkpoint), a .safetensors export"
                   " or an .onnx export (run by onnxruntime)")  # fmt: skip
    p.add_argument("images", nargs="+", metavar="IMAGE|FOLDER",
                   help="image files, or folders of them (the images directly inside, sorted by name)")  # fmt: skip
    p.add_argument("--top", type=positive_int, default=5, help="classes shown per image, most likely first (default 5)")
    p.add_argument("--batch", type=positive_int, default=64,
                   help="images scored at a time; the next batch decodes as the model runs (default 64)")  # fmt: skip
    p.add_argument("--device", choices=choices(Device), default="auto", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="every prediction in one JSON object on stdout")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="a checkpoint's weights as safetensors, or its model as ONNX, for sharing")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("out", help="OUT.safetensors (the weights and record) or OUT.onnx (the model as a graph that"
                   " takes uint8 images: docs/TRAINING.md#onnx)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")
    p.set_defaults(func=cmd_export)


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from lsvr.data.dataset import PreparedDataset
    from lsvr.device import pick_device
    from lsvr.evaluate import eval_loader, evaluate
    from lsvr.inference import augment_for, check_dataset, check_eval_flags, eval_view, load_model

    check_eval_flags(args.resize, args.crop, flip=args.flip, crops=args.crops, shift=args.shift)  # before any file
    if args.report:  # before the pass: a folder holding a user's files is refused, nothing scored or written
        from lsvr.report.folder import check_report_folder

        check_report_folder(Path(args.report))
    device = pick_device(args.device, setting="--device")
    refuse_split_parent(Path(args.dataset))
    dataset = PreparedDataset(args.dataset)
    model, state, found = load_model(Path(args.checkpoint), device, crop=args.crop)
    # the record's evaluation (torchvision's Resize + CenterCrop), or the flags' in its place
    pre = eval_view(state.preprocess, eval_size=args.resize, eval_crop=args.crop, flip=args.flip, crops=args.crops,
                    shift=args.shift)  # fmt: skip
    for problem in check_dataset(pre, dataset, allow_mismatch=args.allow_mismatch):
        print(f"lsvr eval: warning: {dataset.path}: {problem}; scored anyway (--allow-mismatch)", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    loader = eval_loader(dataset, pre, crops=args.crops, batch_size=args.batch, workers=2, prefetch=2, device=device)
    keep = None
    if args.report:
        from lsvr.report.collect import Collector

        keep = Collector()  # each image's top classes, from the probabilities evaluate counts
    result = evaluate(model, loader, augment_for(pre, device), crops=args.crops, flip=pre.eval_flip,
                      shift=pre.eval_shift, keep=keep)  # fmt: skip
    result.update(crops=args.crops, flip=pre.eval_flip, shift=pre.eval_shift, resize=pre.eval_size,
                  crop=pre.eval_crop, checkpoint=str(found), dataset=str(dataset.path))  # fmt: skip
    views = "10 crops (corners, centre, mirrored) each" if args.crops == 10 else "the centre crop"
    views += " and its mirror" if pre.eval_flip else ""
    views += f", and shifted {pre.eval_shift} px up-left and down-right" if pre.eval_shift else ""
    views += f" ({pre.eval_crop} px of {pre.eval_size})"
    if keep is not None:
        from lsvr.report.build import write_eval_report

        result["report"] = str(write_eval_report(Path(args.report), keep.predictions(), dataset=dataset, pre=pre,
                                                 record=state.preprocess, crops=args.crops, checkpoint=str(found),
                                                 description=views))  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  on {result['images']} images, {views}")
        if keep is not None:
            print(f"report: {result['report']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from lsvr.data.readers import Batch
    from lsvr.device import pick_device
    from lsvr.inference import augment_for, check_view, image_paths, load_model, predict
    from lsvr.predict_batches import scored_batches, take_free_cpus

    if args.top < 1:  # torch's topk raised on -1; 0 printed the file names and no class
        raise InputError(f"--top must be a positive whole number, got {args.top}")
    threads = take_free_cpus()  # the decoding pool's and the model's, from the CPUs other work leaves free
    if Path(args.checkpoint).suffix == ".onnx":  # onnxruntime runs the graph, which normalises: pixels go in
        from lsvr.export_onnx import check_onnx_extra, onnx_device, raw_augment, read_onnx

        check_onnx_extra("predict")
        device, found = onnx_device(args.device), Path(args.checkpoint)
        model, state = read_onnx(found, threads=threads)
        check_view(state.preprocess, found)
        augment = raw_augment(state.preprocess)
    else:
        device = pick_device(args.device, setting="--device")
        model, state, found = load_model(Path(args.checkpoint), device)
        check_view(state.preprocess, found)  # the view `lsvr eval` scores: refused where eval would refuse it
        augment = augment_for(state.preprocess, device)
    paths = image_paths(args.images)

    def score(batch: Batch) -> torch.Tensor:
        return predict(model, augment, batch, device, flip=state.preprocess.eval_flip,
                       shift=state.preprocess.eval_shift)  # fmt: skip

    results, failed = [], 0
    for scored in scored_batches(paths, state.preprocess, score, batch=args.batch, threads=threads):
        for line in scored.bad:
            print(f"lsvr predict: error: {line}", file=sys.stderr)
        failed += len(scored.bad)
        if scored.probs is None:
            continue
        values, indices = scored.probs.topk(min(args.top, scored.probs.shape[1]), dim=1)
        for path, row_values, row_indices in zip(scored.paths, values, indices, strict=True):
            top = [{"class": state.classes[i], "index": int(i), "probability": float(v)}
                   for v, i in zip(row_values, row_indices, strict=True)]  # fmt: skip
            results.append({"image": str(path), "top": top})
            if not args.json:  # as they come: a long folder shows progress
                print(path)
                for t in top:
                    print(f"  {t['probability']:7.2%}  {t['class']}")
    if args.json:
        print(json.dumps({"checkpoint": str(found), "predictions": results}))
    if failed:
        print(f"lsvr predict: {failed} of {len(paths)} images could not be read", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from lsvr.export import export
    from lsvr.inference import check_view, load_model

    out = Path(args.out)
    if out.suffix not in (".safetensors", ".onnx"):
        raise InputError(f"{out}: the export is a .safetensors file (weights) or an .onnx file (the graph)")
    if out.suffix == ".onnx":
        from lsvr.export_onnx import check_onnx_extra, export_onnx, input_text

        check_onnx_extra("export")
    refuse_existing(out, overwrite=args.overwrite)
    check_writable(out, what="export file")
    model, state, found = load_model(Path(args.checkpoint), torch.device("cpu"))
    name = state.setting("model", "name")
    if out.suffix == ".safetensors":
        print(f"exported {len(state.weights)} tensors of {name} to {export(state, out)}")
        return 0
    check_view(state.preprocess, found)  # a mean image fits the stored side only, as in eval
    print(f"exported {name} to {export_onnx(model, state, out)}; {input_text(state.preprocess)}")
    return 0


def refuse_existing(out: Path, *, overwrite: bool) -> None:
    """Refuse an output file the user named that is already there (a photo, another tool's
    safetensors): it is replaced only when they say so."""
    if not overwrite and (out.exists() or out.is_symlink()):
        raise InputError(f"{out}: exists; pass --overwrite to replace it")


def refuse_split_parent(path: Path) -> None:
    """A folder that holds prepared splits (`prepare` of idx files writes OUT/train, OUT/test)
    but is none itself: name the splits to pass instead."""
    if not path.is_dir() or (path / "meta.json").exists():
        return
    splits = sorted(p for p in path.iterdir() if p.is_dir() and (p / "meta.json").is_file())
    if splits:
        names = ", ".join(str(p) for p in splits)
        raise InputError(f"{path}: holds prepared splits, not a prepared dataset itself; give one of: {names}")
