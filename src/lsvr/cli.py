"""The `lsvr` command: parses arguments and wires the library's parts together.

    lsvr prepare|train|eval|predict|info|models|plot|convert ...

Exit status: 0 on success, 2 on bad usage or bad input (one line on stderr, no
traceback), 1 on an internal failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lsvr import signals

if sys.argv[1:2] == ["train"]:  # `lsvr train`: SIGTERM noted from here, before the imports below
    signals.watch_start_up()

from lsvr.cli_args import Parser, image_side, positive_float, positive_int, thread_count
from lsvr.cli_model import add_model_commands, refuse_existing
from lsvr.cli_prepare import add_prepare_command, read_names
from lsvr.cli_train import add_train_command
from lsvr.config import CompileMode, Decode, Device, Encoding, Precision, choices
from lsvr.errors import InputError
from lsvr.folders import check_writable
from lsvr.signals import STOPPED_DURING_START_UP, StartUpStop, check_start_up, start_up_stop


def cmd_info(args: argparse.Namespace) -> int:
    from lsvr.info import describe

    info = describe(Path(args.target), verify=args.verify)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    if args.verify and info.get("problems"):
        for problem in info["problems"]:
            print(f"lsvr info: {problem}", file=sys.stderr)
        return 2
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from lsvr.models.registry import describe_models

    rows = describe_models()
    if args.json:
        print(json.dumps(rows))
        return 0
    print("# GMACs: forward multiply-adds of one image at the crop shown: the GFLOPS torchvision quotes")
    print("# (torch's FlopCounterMode counts 2 FLOPs per multiply-add; halved here)")
    print(f"{'name':18} {'parameters':>12} {'GMACs':>7}  {'at':>20}  about")
    for r in rows:
        at = f"crop {r['crop']}, {r['classes']} cls"
        print(f"{r['name']:18} {r['parameters']:>12,} {r['gmacs']:>7.2f}  {at:>20}  {r['about']}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from lsvr.doctor import diagnose, format_report

    if args.dataset:
        from lsvr.data.dataset import PreparedDataset

        PreparedDataset(args.dataset)  # a bad path is said before the machine's part is gathered
    if not args.json and args.dataset:
        print(f"lsvr doctor: reading {args.dataset} for {args.seconds:g} s ...", file=sys.stderr)
    report = diagnose(args.dataset, seconds=args.seconds)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from lsvr.plot import check_out, plot_run

    out = Path(args.out) if args.out else Path(args.run) / "plot.png"
    check_out(out)
    own = Path(args.run) / "plot.png"  # lsvr's own, redrawn each time; a file the user names may be theirs
    if out.resolve() != own.resolve():
        refuse_existing(out, overwrite=args.overwrite)
    check_writable(out, what="plot")
    print(plot_run(Path(args.run), out))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from lsvr.convert import convert, describe

    refuse_existing(Path(args.out), overwrite=args.overwrite)  # a user's file of that name stays as it is
    classes = read_names(args.classes)
    if args.classes_from:
        from lsvr.data.dataset import PreparedDataset

        if classes is not None:
            raise InputError("convert: give --classes or --classes-from, not both")
        classes = list(PreparedDataset(args.classes_from).classes)
    result = convert(Path(args.weights), Path(args.out), model_name=args.model, classes=classes,
                     weights_name=args.weights_name)  # fmt: skip
    print(describe(result))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from lsvr.bench.checks import check_bench_args

    check_bench_args(args)
    if args.what == "loader":
        from lsvr.bench.loader import bench_loader

        bench_loader(images=args.images, batch=args.batch or 128, workers=args.workers, epochs=args.epochs,
                     rounds=args.rounds or 5, folder=args.dir, as_json=args.json)  # fmt: skip
    elif args.what == "train":
        from lsvr.bench.train import bench_train

        bench_train(model=args.model or "alexnet", batch=args.batch or 32, steps=args.steps, workers=args.workers,
                    device_name=args.device, precision=args.precision, compile_=args.compile, folder=args.dir,
                    as_json=args.json, images=args.images, encoding=args.bench_encoding,
                    decode=args.decode, rounds=args.rounds or 3, profile=args.profile,
                    baseline=not args.no_baseline)  # fmt: skip
    elif args.what == "dist":
        from lsvr.bench.dist import bench_dist

        bench_dist(model=args.model or "alexnet", batch=args.batch or 16, steps=args.steps, as_json=args.json)
    elif args.what == "predict":
        from lsvr.bench.predict import bench_predict

        bench_predict(images=args.images, batch=args.batch or 64, model_name=args.model or "resnet18",
                      rounds=args.rounds or 3, folder=args.dir, workers=args.workers, as_json=args.json)  # fmt: skip
    elif args.what == "layout":
        from lsvr.bench.layout import bench_layout

        bench_layout(model=args.model or "quicknet", batch=args.batch or 256, steps=args.steps, rounds=args.rounds or 3,
                     device_name=args.device, crop=args.crop, as_json=args.json)  # fmt: skip
    else:
        from lsvr.bench.prepare import bench_prepare
        from lsvr.bench.prepare_tar import bench_prepare_tar

        run = bench_prepare_tar if args.source == "tar" else bench_prepare
        run(images=args.images, workers=args.workers, rounds=args.rounds or 5, folder=args.dir, as_json=args.json)
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """`lsvr bench`'s arguments."""
    p = sub.add_parser("bench", help="benchmarks against baselines and limits (docs/BENCHMARKS.md)")
    p.add_argument("what", choices=("loader", "prepare", "dist", "train", "layout", "predict"),
                   help="loader: reading batches; prepare: converting photos; dist: a step at world 1 and 2;"
                   " train: end-to-end steps; layout: channels-last against contiguous;"
                   " predict: lsvr predict against a torchvision-style predict")  # fmt: skip
    p.add_argument("--images", type=positive_int, default=2000, help="generated photos (default 2000)")
    p.add_argument("--batch", type=positive_int,
                   help="batch (loader: 128, train: 32, layout: 256, predict: 64)"
                   " or global batch (dist: 16)")  # fmt: skip
    p.add_argument("--model",
                   help="dist, train, layout, predict: the model"
                   " (default alexnet; layout: quicknet; predict: resnet18)")  # fmt: skip
    p.add_argument("--steps", type=positive_int, default=3,
                   help="dist: timed steps per world size; train, layout: per pipeline")  # fmt: skip
    p.add_argument("--device", choices=choices(Device), default="auto", help="train, layout: where the model steps")
    p.add_argument("--crop", type=image_side, help="layout: the input side (default: the model's)")
    p.add_argument("--precision", choices=choices(Precision), default="fp32", help="train: autocast precision")
    p.add_argument("--compile", choices=choices(CompileMode), default="none",
                   help="train: torch.compile mode (reduce-overhead adds CUDA graphs)")  # fmt: skip
    p.add_argument("--encoding", dest="bench_encoding", choices=choices(Encoding), default="raw",
                   help="train: the prepared set's encoding (jpeg: decoded by the loader's threads)")  # fmt: skip
    p.add_argument("--decode", choices=choices(Decode), default="host", help="train, jpeg: in loader threads or on GPU")
    p.add_argument("--epochs", type=positive_int, default=2, help="passes over the set per measure (raw: 4x)")
    p.add_argument("--rounds", type=positive_int,
                   help="interleaved rounds, the median reported (train, layout, predict: 3; others: 5)")  # fmt: skip
    p.add_argument("--workers", type=thread_count, help="threads (lsvr) and processes (baseline); default: all cores")
    p.add_argument("--source", choices=("folder", "tar"), default="folder",
                   help="prepare: tar races a nested tar (ILSVRC2012_img_train.tar's layout) with folders")  # fmt: skip
    p.add_argument("--dir", help="folder for the generated photos and prepared sets (default ~/.cache/lsvr-bench)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="train: --steps end-to-end steps under torch.profiler after the timed rounds (a trace, top ops)",
    )
    p.add_argument("--no-baseline", action="store_true",
                   help="train: leave out the torchvision-style baseline (timed once, in another call)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="the figures as JSON lines on stdout")
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lsvr", description="Large-scale visual recognition (AlexNet, Ding et al.)")
    sub = parser.add_subparsers(dest="command", required=True)

    add_prepare_command(sub)

    add_train_command(sub)
    add_model_commands(sub)
    p = sub.add_parser("info", help="describe a prepared dataset, checkpoint or run folder")
    p.add_argument(
        "target", help="a prepared dataset, a checkpoint .pt, a .safetensors or .onnx export, or a run folder"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-check a dataset's checksums, or that checkpoints load with finite weights",
    )
    p.add_argument("--json", action="store_true", help="the description as one JSON object on stdout")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="model names, parameter counts and forward multiply-adds")
    p.add_argument("--json", action="store_true", help="the table as a JSON list on stdout")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("doctor", help="this machine's software, devices, memory and disk; a set's read rate")
    p.add_argument("dataset", nargs="?", help="a prepared set: will it fit in RAM, how fast it reads and decodes")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="how long the read test runs (default 10)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object on stdout")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("plot", help="loss and error curves of a run as a PNG")
    p.add_argument("run", help="a run folder (its metrics.jsonl)")
    p.add_argument("--out", help="PNG path (default RUN/plot.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=cmd_plot)

    from lsvr.models.torchvision_weights import WEIGHTS

    p = sub.add_parser("convert", help="torchvision weights file -> lsvr checkpoint with their preprocessing",
                       description="Turn a torchvision weights file of a zoo model (resnet50-11ad3fa6.pth, or"
                       " its state_dict as .safetensors) into an lsvr checkpoint for lsvr eval and predict, its"
                       " preprocessing the evaluation transform torchvision publishes for those weights"
                       " (docs/MODELS.md lists them).")  # fmt: skip
    p.add_argument("weights", help="torchvision weights: a state_dict .pth/.pt or .safetensors")
    p.add_argument("out", help="the checkpoint to write, OUT.pt")
    p.add_argument("--model", choices=tuple(WEIGHTS), default="alexnet_tv",
                   help="the lsvr model the weights go into (default alexnet_tv)")  # fmt: skip
    p.add_argument("--weights", dest="weights_name", metavar="NAME",
                   help="which of the model's torchvision weights the file holds (IMAGENET1K_V2, or"
                   " ResNet50_Weights.IMAGENET1K_V2); default: the one torchvision names the file after,"
                   " else the first (V1)")  # fmt: skip
    p.add_argument("--classes", help="file of class names, one per line")
    p.add_argument("--classes-from", metavar="SET",
                   help="the class names of a prepared set (an ImageNet set: its sorted wnids,"
                   " torchvision's order)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=cmd_convert)
    _add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error said in one line (2)
        return int(exc.code or 0)
    # train: a SIGTERM before the loop's own handler (Preemption) takes over ends the
    # start-up with one line; the heavy imports and the data checks come after this. The
    # handler notes it; check_start_up acts on it here and at the start-up's other safe points.
    with start_up_stop(enabled=args.command == "train"):
        try:
            check_start_up()
            if args.command in ("prepare", "train", "eval", "bench"):
                from lsvr.memory import keep_freed_memory

                keep_freed_memory()
            status = args.func(args)
            check_start_up()  # noted where no Preemption took over: nothing trained (`--keys`, done)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return status
        except BrokenPipeError:
            # `lsvr models --json | head -1`: the reader has what it wanted. Quiet, with the
            # status a program killed by SIGPIPE has, as coreutils' tools end in a pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except InputError as exc:
            print(f"lsvr {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"lsvr {args.command}: interrupted", file=sys.stderr)
            return 130
        except StartUpStop:
            print(f"lsvr {args.command}: stopped during start-up; nothing to save", file=sys.stderr)
            return STOPPED_DURING_START_UP
