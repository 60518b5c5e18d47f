"""`lsvr bench prepare --source tar`: prepare from a nested tar (the generated photos packed as
ILSVRC2012_img_train.tar is) against prepare from the same photos in class folders, in one run.

Each round opens the source as the command does (the folder walk, the tar's index pass) and
prepares it to 256 px JPEG; the rounds interleave, so a noisy minute hits both. Then each is
prepared once more in a fresh process whose peak resident memory (its own VmHWM, read as it
exits) is reported: the tar's index and its members in flight against the folder's list. The
kernel's ru_maxrss from wait4 would not do: it keeps, across exec, the resident size of the
forked bench process, so both figures would be the bench's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lsvr.bench.loader import photo_set
from lsvr.bench.photos import pack_nested_tar
from lsvr.bench.prepare import SIZE, settings
from lsvr.bench.timing import environment, measure, median, report, workdir
from lsvr.data.open_source import open_source
from lsvr.data.prepare import prepare

GOAL = 0.95  # of the folder prepare's images/s


# Runs `lsvr prepare` as `python -m lsvr` does, then writes the process's VmHWM (KiB) to argv[1].
_MEASURED = """
import atexit, runpy, sys
report = sys.argv.pop(1)
def high_water():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    open(report, "w").write(line.split()[1])
atexit.register(high_water)
runpy.run_module("lsvr", run_name="__main__")
"""


def peak_rss_mib(source: Path, out: Path, workers: int) -> float:
    """Peak resident memory of `lsvr prepare SOURCE OUT` in a process of its own."""
    report = out.parent / "peak-rss-kib.txt"
    command = [sys.executable, "-c", _MEASURED, str(report), "prepare", str(source), str(out), "--size", str(SIZE),
               "--encoding", "jpeg", "--workers", str(workers), "--no-progress", "--overwrite"]  # fmt: skip
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lsvr prepare {source} failed: {done.stderr.decode()[-500:]}")
    return int(report.read_text()) / 1024


def bench_prepare_tar(*, images: int, workers: int | None, rounds: int, folder: str | None, as_json: bool) -> dict:
    workers = workers or os.cpu_count() or 1
    root = workdir(folder)
    photos = photo_set(root, images, workers).root
    tar = root / f"photos-{images}.tar"
    if not tar.is_file():
        pack_nested_tar(photos, tar)
    tar.read_bytes()  # the page cache holds both copies for every round
    for path in photos.rglob("*.JPEG"):
        path.read_bytes()
    out = root / "bench-prepare-tar-out"

    def run(path: Path):
        def whole() -> int:
            return prepare(open_source(path), out, size=SIZE, encoding="jpeg", workers=workers, overwrite=True,
                           progress=False)["num_images"]  # fmt: skip

        return whole

    rounds_of = {"folder_prepare": [], "tar_prepare": []}
    for _ in range(rounds):
        rounds_of["folder_prepare"].append(measure(run(photos)))
        rounds_of["tar_prepare"].append(measure(run(tar)))
    rows = {name: median(ms) for name, ms in rounds_of.items()}
    fraction = rows["tar_prepare"].per_sec / rows["folder_prepare"].per_sec
    peaks = {"folder_prepare": peak_rss_mib(photos, out, workers), "tar_prepare": peak_rss_mib(tar, out, workers)}
    result = {
        "benchmark": "prepare_tar",
        "settings": {**settings(rounds, images), "tar_bytes": tar.stat().st_size},
        "environment": environment(workers),
        "images_per_sec": {name: round(m.per_sec, 1) for name, m in rows.items()},
        "images_per_sec_per_core": {name: round(m.per_core, 1) for name, m in rows.items()},
        "pipelines": {name: m.as_dict() for name, m in rows.items()},
        "rounds": {name: [round(m.per_sec, 1) for m in ms] for name, ms in rounds_of.items()},
        "fraction_of_folder_prepare": round(fraction, 3),
        "peak_rss_mib": {name: round(v, 1) for name, v in peaks.items()},
        "goals": {"fraction_of_folder_prepare": {"goal": GOAL, "met": fraction >= GOAL}},
    }
    lines = [
        f"tar / folder images/s: {fraction:.3f} (goal >= {GOAL}: {'met' if fraction >= GOAL else 'MISSED'})",
        f"peak memory: folder {peaks['folder_prepare']:.1f} MiB, nested tar {peaks['tar_prepare']:.1f} MiB"
        f" ({images} images)",
    ]
    report(result, as_json, list(rows.items()), lines)
    shutil.rmtree(out, ignore_errors=True)
    return result
