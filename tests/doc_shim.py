"""The `lsvr` that documented commands meet in CI (tests/test_doc_commands.py): the real
`python -m lsvr` with scale-down options appended, so that a command a user types runs in
seconds on stand-in data. argparse keeps an option's last value and `--set` keys repeat, so
what is appended wins over what the document wrote.

    python tests/doc_shim.py BENCH_DIR lsvr-arguments...
    python tests/doc_shim.py BENCH_DIR --torchrun torchrun-arguments...   # `-m lsvr ...` scaled the same
"""

from __future__ import annotations

import os
import sys

# `lsvr train`: two steps of 8 images (a ResNet-50 step of 8 at 224 px takes several seconds on
# 2 CPU cores), no progress bar, nothing compiled, fp32 (bf16 is ~15x slower on CPU), then the
# one validation a run always ends with, of one view (flip and shifted views would triple it).
TRAIN = ["--set", "train.max_steps=2", "train.global_batch=8", "train.accumulate=1", "train.progress=false",
         "train.compile=none", "train.precision=fp32", "train.time_budget_s=0", "train.log_every=1",
         "train.profile_steps=0", "data.val_flip=false", "data.val_shift=0"]  # fmt: skip

# `lsvr bench WHAT`: the fewest photos, rounds and steps each measure needs to run at all.
BENCH = {
    "loader": ["--images", "16", "--batch", "8", "--rounds", "1", "--epochs", "1", "--workers", "1"],
    "prepare": ["--images", "16", "--rounds", "1", "--workers", "1"],
    "train": ["--images", "20", "--batch", "2", "--steps", "1", "--rounds", "1", "--workers", "1"],
    "layout": ["--batch", "2", "--steps", "1", "--rounds", "1"],
    "dist": ["--batch", "2", "--steps", "1"],
    # 16 photos through resnet18 at 224, each side once: about 3 CPU-seconds a side here
    "predict": ["--images", "16", "--batch", "8", "--rounds", "1", "--workers", "1"],
}


def scaled(args: list[str], bench_dir: str) -> list[str]:
    """args with the scale-down options of its command appended (other commands as given)."""
    words = [a for a in args if not a.startswith("-")]
    if not words:
        return args
    if words[0] == "train":
        return [*args, *TRAIN]
    what = next((w for w in words[1:] if w in BENCH), None) if words[0] == "bench" else None
    if what is None:
        return args
    return [*args, *BENCH[what]] if what in ("layout", "dist") else [*args, *BENCH[what], "--dir", bench_dir]


def torchrun_scaled(args: list[str], bench_dir: str) -> list[str]:
    """torchrun's arguments with what follows `-m lsvr` scaled (torchrun's own options come first)."""
    for i in range(len(args) - 1):
        if args[i : i + 2] == ["-m", "lsvr"]:
            return [*args[: i + 2], *scaled(args[i + 2 :], bench_dir)]
    return args


def main() -> None:
    bench_dir, args = sys.argv[1], sys.argv[2:]
    if args[:1] == ["--torchrun"]:
        command = ["-m", "torch.distributed.run", *torchrun_scaled(args[1:], bench_dir)]
    else:
        command = ["-m", "lsvr", *scaled(args, bench_dir)]
    os.execv(sys.executable, [sys.executable, *command])


if __name__ == "__main__":
    main()
