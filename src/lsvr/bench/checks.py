"""The arguments of `lsvr bench`, checked before any photo is generated or any set prepared."""

from __future__ import annotations

import argparse

from lsvr.bench.timing import workdir
from lsvr.errors import InputError
from lsvr.folders import check_writable

LOADER_BATCH = 128  # `lsvr bench loader`'s default batch


def check_bench_args(args: argparse.Namespace) -> None:
    """One line naming the flag for a loader set smaller than one batch (it would time no batch
    at all), or a --dir that is a file or cannot be written (each count is positive: the parser's
    types, cli_args.py, saw to it)."""
    if args.profile and args.what != "train":
        raise InputError(f"--profile profiles `lsvr bench train`'s steps; `lsvr bench {args.what}` has none")
    if args.no_baseline and args.what != "train":
        raise InputError(f"--no-baseline leaves out `lsvr bench train`'s baseline; `lsvr bench {args.what}` has none")
    if args.what == "loader":
        batch = args.batch or LOADER_BATCH
        if args.images < batch:
            raise InputError(f"--images {args.images} is fewer than one batch (--batch {batch}): no batch to time")
    if args.what not in ("dist", "layout"):  # dist keeps its files in a temporary folder; layout writes none
        folder = workdir(args.dir)
        if folder.exists() and not folder.is_dir():  # check_writable passes a writable file
            raise InputError(f"--dir {folder}: not a folder (a file is there)")
        check_writable(folder, what="bench folder")
