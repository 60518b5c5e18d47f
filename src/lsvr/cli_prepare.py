"""`lsvr prepare`: its arguments and the command. Apart from lsvr.cli so that a config's
`data.prepared_with` is parsed by this parser without importing every command."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lsvr.cli_args import Whole, fraction, positive_int, thread_count
from lsvr.config import Encoding, ResizePolicy, choices
from lsvr.errors import InputError


def read_names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    from lsvr.data.sources import read_class_names

    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such classes file")
    return read_class_names(file)  # an empty or repeated name is refused, naming the file


def cmd_prepare(args: argparse.Namespace) -> int:
    from lsvr.data.dataset import PreparedDataset
    from lsvr.data.open_source import check_options, open_source
    from lsvr.data.output import check_apart, check_location, check_split_parent, resolve_out
    from lsvr.data.prepare import WriteError, prepare
    from lsvr.data.sources import check_class_names, idx_splits

    source_path, out = Path(args.source), resolve_out(Path(args.out))
    classes = read_names(args.classes)
    if args.classes_from:
        if classes is not None:
            raise InputError("prepare: give --classes or --classes-from, not both")
        classes = PreparedDataset(args.classes_from).classes
        check_class_names(classes, where=Path(args.classes_from) / "meta.json")
    labels = Path(args.labels) if args.labels else None
    devkit_meta = Path(args.devkit_meta) if args.devkit_meta else None
    if not source_path.exists() and "{" not in args.source:  # a brace pattern names WebDataset shards
        raise InputError(f"{source_path}: no such file or directory")
    check_options(source_path, split=args.split, labels=labels, devkit_meta=devkit_meta,
                  allow_empty_classes=args.allow_empty_classes)  # fmt: skip
    if args.quality is not None and (args.encoding or ("jpeg" if args.resize == "short" else "raw")) == "raw":
        raise InputError(f"--quality {args.quality}: the JPEG quality of --encoding jpeg; this prepare stores raw"
                         " pixels (--resize short, or --encoding jpeg, stores JPEG)")  # fmt: skip
    # before reading the source: an OUT that is the source or above it, or that cannot be
    # written, is refused at once (an OUT inside a class-folder tree is refused by prepare())
    check_apart(source_path, out, inside_ok=True)
    check_location(out)
    splits = [args.split]
    if args.split is None and source_path.is_dir() and len(idx_splits(source_path)) > 1:
        splits = list(idx_splits(source_path))  # a folder of idx files: one output per split
        check_split_parent(out, splits)
    command = shlex.join(["lsvr", *sys.argv[1:]])
    for split in splits:
        target = out / split if len(splits) > 1 else out
        source = open_source(source_path, split=split, classes=classes, labels=labels, devkit_meta=devkit_meta,
                             source_format=args.source_format, progress=not args.no_progress,
                             allow_empty_classes=args.allow_empty_classes)  # fmt: skip
        try:
            meta = prepare(
                source, target, size=args.size, resize_policy=args.resize, max_size=args.max_size,
                encoding=args.encoding, channels=args.channels, quality=args.quality or 90, workers=args.workers,
                max_rejects=args.max_rejects, overwrite=args.overwrite, progress=not args.no_progress, command=command,
                max_image_bytes=args.max_image_bytes, allow_cut=args.allow_cut,
            )  # fmt: skip
        except WriteError as exc:
            print(f"lsvr prepare: stopped: {exc}", file=sys.stderr)
            return 1
        rejected = meta["num_rejected"]
        kinds = ", ".join(f"{count} {kind}" for kind, count in meta.get("rejected_by_kind", {}).items())
        note = f", {rejected} rejected: {kinds} (see {target / 'rejects.tsv'})" if rejected else ""
        counts = f"{meta['num_images']} images of {len(meta['classes'])} classes"
        if meta.get("already_prepared"):
            print(f"already prepared: {counts} in {target}{note}")
        else:
            print(f"prepared {counts} into {target}{note}")
        if source.lost:  # prepared with --allow-cut: said again under the summary
            print(f"lsvr prepare: {source.lost} (prepared what it holds: --allow-cut)", file=sys.stderr)
    return 0


def add_prepare_command(sub: argparse._SubParsersAction) -> None:
    """`lsvr prepare`'s arguments."""
    p = sub.add_parser("prepare", help="convert images or idx files into a prepared dataset")
    p.add_argument("source", help="class-folder tree, idx images file, folder of idx files, a tar (ILSVRC2012's,"
                   " WebDataset shards), a folder of tars, or a shard pattern train-{000000..000009}.tar")  # fmt: skip
    p.add_argument("out", help="output folder (a folder of idx files with two splits gives OUT/train, OUT/test)")
    p.add_argument("--size", type=Whole(8, 4096), default=256,
                   help="stored side in pixels, 8..4096 (short: the shorter side; 256)")  # fmt: skip
    p.add_argument("--encoding", choices=choices(Encoding), help="default raw; jpeg for --resize short")
    p.add_argument("--resize", choices=choices(ResizePolicy), default="squash", help="squash: the paper's; short: JPEG")
    p.add_argument("--max-size", type=positive_int, metavar="M", help="--resize short: the longer side's cap")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB); default: 1 for idx, else 3")
    p.add_argument("--quality", type=Whole(1, 100), help="JPEG quality for --encoding jpeg (default 90)")
    p.add_argument("--workers", type=thread_count, help="decoding threads (default: all cores)")
    p.add_argument("--classes", help="file of class names, one per line")
    p.add_argument("--classes-from", metavar="PREPARED", help="use a prepared set's classes (val: train's)")
    p.add_argument("--labels", help="label file of a flat image folder or tar: val.txt, LOC_val_solution.csv, the"
                   " devkit's ILSVRC2012_validation_ground_truth.txt or ILSVRC2012_devkit_t12.tar.gz")  # fmt: skip
    p.add_argument("--devkit-meta", help="the devkit's meta.mat (default: beside the ground-truth file)")
    p.add_argument("--source-format", choices=("auto", "imagenet", "webdataset"), default="auto",
                   help="a tar source's layout: imagenet (inner class tars, class folders, --labels) or webdataset"
                   " (image + .cls/.txt/.json per key); auto: by content")  # fmt: skip
    p.add_argument("--max-rejects", type=fraction, default=1.0, metavar="FRACTION",
                   help="abort (exit 2) once more than this fraction is rejected (default 1: never)")  # fmt: skip
    p.add_argument("--max-image-bytes", type=positive_int, default=64 << 20, metavar="BYTES",
                   help="a file or tar member larger than this is rejected unread: too-large (64 MiB)")  # fmt: skip
    p.add_argument("--allow-cut", action="store_true",
                   help="prepare what a cut or damaged tar holds (default: refused, naming what is lost)")  # fmt: skip
    p.add_argument("--split", choices=("train", "test"), help="which split of a folder of idx files")
    p.add_argument("--allow-empty-classes", action="store_true",
                   help="keep an empty class folder as a class of no images (default: refused, named)")  # fmt: skip
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT, and discard an unfinished prepare of other options",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_prepare)
