"""`data.prepared_with`: the `lsvr prepare` options a preset's sets must have been made with,
read by prepare's own parser (each set's meta.json is checked against them by
lsvr.train.prepared_check before the first step).

A preset's recipe holds for the images it was written for: a ResNet preset (RandomResizedCrop,
shorter side 256 then centre 224 for evaluation) trained on a squash 256 set ran without a
word and scored another recipe. Where a difference makes the run wrong or not what the preset
claims, the start is refused (one line: the set, the option, both values, the fix); where it is
merely different (another encoding, a larger stored side), one warning line and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from typing import TYPE_CHECKING, Any

from lsvr.errors import InputError

if TYPE_CHECKING:
    pass

KEY = "data.prepared_with"
FLAGS = {"channels": "--channels", "resize": "--resize", "size": "--size", "max_size": "--max-size",
         "encoding": "--encoding", "jpeg_quality": "--quality"}  # fmt: skip


def recorded_options(args: argparse.Namespace) -> dict[str, Any]:
    """What a prepare of these parsed options writes into meta.json (the fields a set records);
    channels only where given: its default (1 for idx files, else 3) depends on the source."""
    encoding = args.encoding or ("jpeg" if args.resize == "short" else "raw")
    options = {"resize": args.resize, "size": args.size, "max_size": args.max_size, "encoding": encoding,
               "jpeg_quality": (args.quality or 90) if encoding == "jpeg" else None}  # fmt: skip
    if args.channels is not None:
        options["channels"] = args.channels
    return options


def parse_prepare(words: list[str], *, what: str) -> argparse.Namespace:
    """`lsvr prepare`'s parse of words (SOURCE OUT then options); what the parser refuses is an
    InputError naming `what` (the config key, or a preset's header)."""
    from lsvr.cli_args import Parser
    from lsvr.cli_prepare import add_prepare_command

    parser = Parser(prog="lsvr")
    add_prepare_command(parser.add_subparsers(dest="command", required=True))
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
        try:
            return parser.parse_args(["prepare", *words])
        except SystemExit as exc:  # a usage error (2), or --help (0): neither names how a set was made
            helped = exc.code == 0
    if helped:
        raise InputError(f"{what}: --help names no option a set was made with")
    line = said.getvalue().strip().splitlines()[-1]  # "lsvr prepare: error: REASON (see `lsvr ... --help`)"
    reason = re.sub(r" \(see `[^`]*`\)$", "", line.split(": error: ", 1)[-1])
    raise InputError(f"{what}: {reason} (see `lsvr prepare --help`)")


def prepared_with(value: str) -> dict[str, Any] | None:
    """The recorded options data.prepared_with asks for; None where it is empty (no check). A
    value lsvr prepare would refuse is an InputError naming the key."""
    if not value.strip():
        return None
    what = f"config: {KEY}={value!r}"
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None
    args = parse_prepare(["SOURCE", "OUT", *words], what=what)
    options = recorded_options(args)
    resize, size, cap = options["resize"], options["size"], options["max_size"]
    from lsvr.data.prepare import check_short  # here: the config's checks import this module

    try:  # what lsvr prepare refuses before reading, in its own words
        check_short(resize, size=size, max_size=cap, encoding=options["encoding"])
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None
    if args.quality is not None and options["encoding"] == "raw":
        raise InputError(f"{what}: --quality is the JPEG quality of --encoding jpeg; these options store raw pixels")
    return options
