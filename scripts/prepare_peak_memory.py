"""Peak memory of `lsvr prepare` on hostile inputs, each in a process of its own under an
address-space cap (so that a prepare that reads an input whole fails at the cap instead of
taking the machine's memory):

    .venv/bin/python scripts/prepare_peak_memory.py [--src SRC] [--cap-gb 6] [--dir DIR]

--src: the lsvr source tree to measure (default this checkout's src/; another checkout's
src/ gives its figures on the same inputs). Prints one JSON line per input: its exit status,
peak resident memory (the child's ru_maxrss), seconds, whether it hit the cap, and the last
line it wrote on stderr. Inputs (docs/DATA_FORMAT.md, limits):
  gz_2gib_member   a 2 MB .tar.gz holding one 2 GiB member (of zeros), beside 4 small images
  sparse_3gb_file  a class folder holding a 3 GB sparse big.jpg, beside 4 small images
  label_1e11       a WebDataset shard whose one .cls says 99999999999
  json_label_3e8   a WebDataset shard whose one .json says {"label": 300000000}
  brace_1e9        the pattern wds/x-{0..999999999}.tar
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def jpeg(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def members(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build(folder: Path) -> dict[str, str]:
    """The hostile inputs in folder, by name: the path (or pattern) to prepare."""
    rng = np.random.default_rng(0)
    good = {f"{c}/{k}.jpg": jpeg(rng) for c in ("cat", "dog") for k in range(2)}
    with open(folder / "big.tar.gz", "wb") as f:  # gzip members concatenate: 2 GiB of zeros in 128 equal ones
        info = tarfile.TarInfo("cat/big.jpg")
        info.size = 2 << 30
        f.write(gzip.compress(info.tobuf()))
        zeros = gzip.compress(bytes(16 << 20), compresslevel=9)
        for _ in range(128):
            f.write(zeros)
        f.write(gzip.compress(members(good)))
    for name, data in good.items():
        (folder / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "tree" / name).write_bytes(data)
    with open(folder / "tree" / "cat" / "big.jpg", "wb") as f:
        f.truncate(3_000_000_000)  # sparse: nothing written
    for name, label in (("cls", b"99999999999"), ("json", b'{"label": 300000000}')):
        shard = {}
        for k in range(4):
            shard[f"{k:06d}.jpg"] = jpeg(rng)
            shard[f"{k:06d}.{name}"] = label if k == 1 else str(k % 2).encode()
        (folder / f"label_{name}.tar").write_bytes(members(shard))
    (folder / "wds").mkdir()
    return {"gz_2gib_member": str(folder / "big.tar.gz"), "sparse_3gb_file": str(folder / "tree"),
            "label_1e11": str(folder / "label_cls.tar"), "json_label_3e8": str(folder / "label_json.tar"),
            "brace_1e9": str(folder / "wds" / "x-{0..999999999}.tar")}  # fmt: skip


def measure(source: str, out: Path, *, src: Path, cap: int, timeout: float) -> dict:
    """One prepare under the cap: exit status, peak resident MiB, seconds, the stderr tail."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lsvr", "prepare", source, str(out), "--size", "32", "--no-progress", "--workers", "2"]
    started = time.time()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit)
        while True:  # reaped by wait4, which gives this child's own rusage
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.time() - started > timeout:
                child.kill()
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.1)
        rc = child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace").strip().splitlines()
    return {"rc": rc, "peak_mib": round(usage.ru_maxrss / 1024), "seconds": round(time.time() - started, 1),
            "hit_cap": any("MemoryError" in line for line in text),
            "stderr": text[-1][:300] if text else ""}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the lsvr source tree to measure")
    parser.add_argument("--cap-gb", type=float, default=6.0, help="address-space cap per prepare, GB (default 6)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per prepare (default 180)")
    parser.add_argument("--dir", type=Path, help="where the inputs are built (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        for name, source in build(folder).items():
            result = measure(source, folder / f"out_{name}", src=args.src, cap=int(args.cap_gb * 1e9),
                             timeout=args.timeout)  # fmt: skip
            print(json.dumps({"input": name, "src": str(args.src), "cap_gb": args.cap_gb, **result}), flush=True)


if __name__ == "__main__":
    main()
