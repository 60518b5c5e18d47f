"""`lsvr doctor [--json] [DATASET]`: what to know before a long run. The software (torch,
CUDA, cuDNN, NCCL, simplejpeg's libjpeg-turbo), the devices and their memory, the CPU's cores
and SIMD level, RAM and free disk; with a prepared DATASET, whether it fits in the page cache,
how fast it reads and decodes (a few seconds with one thread, then with every core), and the
`train.threads` (from the cores the load leaves free), `data.workers` and encoding that suit
this machine.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsvr.data.dataset import PreparedDataset

GiB = 2**30
BATCH = 64  # images a read in the rate test


def diagnose(dataset: str | None, *, seconds: float = 10.0) -> dict[str, Any]:
    """The whole report as a dict; DATASET's part where one is given (an InputError where it is not a set)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    devices = _devices()
    report: dict[str, Any] = {
        "software": _software(),
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count(), "usable_cores": cores,
                "simd": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()},
        "devices": devices,
        "memory": _memory(),
    }  # fmt: skip
    where = Path(dataset) if dataset else Path.cwd()
    usage = shutil.disk_usage(where if where.exists() else Path.cwd())
    report["disk"] = {
        "path": str(where),
        "free_gb": round(usage.free / GiB, 1),
        "total_gb": round(usage.total / GiB, 1),
    }
    if dataset:
        ds = PreparedDataset(dataset)
        report["dataset"] = _dataset(ds, report["memory"], seconds=seconds, cores=cores)
        report["recommend"] = _recommend(ds, report["dataset"], report["memory"], cores=cores, gpus=len(devices))
    else:
        report["recommend"] = {"data.workers": max(1, cores // max(1, len(devices))),
                               "why": ["the usable cores, shared by the training processes (one per GPU)"]}  # fmt: skip
    threads, why = _threads(cores=cores, processes=max(1, len(devices)))
    report["cpu"]["load_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    report["recommend"] = {"train.threads": threads, **report["recommend"]}
    report["recommend"]["why"] = [why, *report["recommend"]["why"]]
    return report


def _threads(*, cores: int, processes: int) -> tuple[int, str]:
    """train.threads for a run started now, and why: OpenMP's threads spin against other busy
    processes (TRAPS.md: 1,897 -> 163 images/s under a load of 5 on 2 cores)."""
    from lsvr.train.cpus import busy_cpus, free_threads

    busy = busy_cpus()
    share = max(1, cores // processes)
    threads = free_threads(share=share, cpus=cores, load=busy)
    why = (
        f"train.threads {threads}: {cores} usable cores, {processes} training process(es), {busy:.1f} of them busy"
        " with other work now; train.threads: 0 chooses so at each start (a resume keeps the checkpoint's count)"
    )
    if threads < share:
        why += "; more threads would spin against the other work"
    policy = os.environ.get("OMP_WAIT_POLICY")
    if policy and policy.upper() == "ACTIVE":
        why += "; OMP_WAIT_POLICY=ACTIVE is set: idle threads spin, which costs most on a shared machine"
    return threads, why


def versions() -> dict[str, str]:
    """lsvr's and its main parts' versions: the one reporter, which `lsvr bench` records too."""
    import simplejpeg

    from lsvr import __version__

    return {"lsvr": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "simplejpeg": getattr(simplejpeg, "__version__", "present")}  # fmt: skip


def _software() -> dict[str, Any]:
    import simplejpeg

    cuda = torch.cuda.is_available()
    nccl = None
    if cuda and hasattr(torch.cuda, "nccl"):
        try:
            version = torch.cuda.nccl.version()
            nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        except (RuntimeError, AttributeError):
            nccl = None
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {**versions(), "cuda": torch.version.cuda, "cuda_available": cuda, "cudnn": cudnn, "nccl": nccl,
            "libjpeg_turbo": _jpeg_works(simplejpeg)}  # fmt: skip


def _jpeg_works(simplejpeg) -> str:
    """simplejpeg carries libjpeg-turbo inside it: a round trip shows it loads and works."""
    try:
        image = np.zeros((16, 16, 3), np.uint8)
        simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(image, quality=90))
    except (RuntimeError, ValueError, OSError) as exc:
        return f"broken ({exc})"
    return "works (bundled with simplejpeg)"


def _devices() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    found = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        found.append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / GiB, 1),
                      "capability": f"{p.major}.{p.minor}", "bf16": torch.cuda.is_bf16_supported()})  # fmt: skip
    return found


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> dict[str, Any]:
    """RAM from /proc/meminfo, and the cgroup's limit where one is lower (a container's)."""
    info = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    total, available = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    out = {"total_gb": round(total / GiB, 1), "available_gb": round(available / GiB, 1)}
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and int(limit) < total:
            out["cgroup_limit_gb"] = round(int(limit) / GiB, 1)
    except OSError:
        pass
    return out


def _dataset(ds: PreparedDataset, memory: dict, *, seconds: float, cores: int) -> dict[str, Any]:
    size = sum(p.stat().st_size for p in ds.path.iterdir() if p.is_file())
    room = min(memory.get("available_gb", 0), memory.get("cgroup_limit_gb", float("inf")))
    one = _read_rate(ds, threads=1, seconds=seconds / 2)
    many = _read_rate(ds, threads=cores, seconds=seconds / 2)
    return {
        "path": str(ds.path), "images": len(ds), "classes": len(ds.classes), "encoding": ds.encoding,
        "image_shape": list(ds.shape), "size_gb": round(size / GiB, 3),
        "fits_page_cache": size / GiB <= room, "page_cache_room_gb": room,
        "read_decode_images_per_sec": {"1_thread": one, f"{cores}_threads": many},
        "seconds": seconds,
    }  # fmt: skip


def _read_rate(ds: PreparedDataset, *, threads: int, seconds: float) -> float:
    """Images per second read (and decoded, for JPEG) in random order by `threads` threads."""
    rng = np.random.default_rng(0)
    deadline = time.perf_counter() + seconds

    def work(seed: int) -> int:
        rows, done = np.random.default_rng(seed).permutation(len(ds)), 0
        while time.perf_counter() < deadline:
            if ds.variable:
                ds.image(int(rows[done % len(rows)]))
                done += 1
            else:  # a batch at a time, as the loader's threads read
                ds.read(np.sort(np.take(rows, np.arange(done, done + BATCH), mode="wrap")))
                done += BATCH
        return done

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(work, rng.integers(0, 2**31, threads)))
    return round(total / (time.perf_counter() - began), 1)


def _recommend(ds: PreparedDataset, found: dict, memory: dict, *, cores: int, gpus: int) -> dict[str, Any]:
    """data.workers and the encoding, with the reason for each."""
    per_process = max(1, cores // max(1, gpus))
    rates = found["read_decode_images_per_sec"]
    one, many = rates["1_thread"], rates[f"{cores}_threads"]
    if cores > 1 and many < 1.2 * one:  # the reads do not scale: extra threads only contend
        per_process = 1
        why = [f"the set reads at {one:.0f} images/s on one thread and {many:.0f} on {cores}: more threads do not"
               " read faster here"]  # fmt: skip
    else:
        why = [f"{per_process} usable cores per training process; the set reads at {many:.0f} images/s on {cores}"
               f" threads ({one:.0f} on one)"]  # fmt: skip
    out: dict[str, Any] = {"data.workers": per_process}
    room = found["page_cache_room_gb"]
    if ds.encoding == "jpeg" and not ds.variable:
        raw_gb = len(ds) * int(np.prod(ds.shape)) / GiB
        if raw_gb <= room:
            out["encoding"] = "raw"
            why.append(f"`lsvr prepare --encoding raw` stores {raw_gb:.2f} GB, which fits in RAM: reading it"
                       " needs no decoding")  # fmt: skip
        elif gpus:
            out["data.decode"] = "device"
            why.append(f"raw would take {raw_gb:.1f} GB, more than RAM's {room:.1f} GB free: keep JPEG and decode on"
                       " the GPU (data.decode=device)")  # fmt: skip
        else:
            out["encoding"] = "jpeg"
            why.append(f"raw would take {raw_gb:.1f} GB, more than RAM's {room:.1f} GB free: keep JPEG")
    elif ds.encoding == "jpeg":
        out["encoding"] = "jpeg"
        if gpus:
            out["data.decode"] = "device"
        why.append("images of varying size (--resize short) are stored only as JPEG"
                   + ("; decode them on the GPU (data.decode=device)" if gpus else ""))  # fmt: skip
    elif not found["fits_page_cache"]:
        out["encoding"] = "jpeg"
        why.append(f"the raw set ({found['size_gb']:.1f} GB) does not fit in RAM's {room:.1f} GB free: every epoch"
                   " reads it from disk; `lsvr prepare --encoding jpeg` stores several times fewer bytes")  # fmt: skip
    else:
        out["encoding"] = "raw"
        why.append("the raw set fits in RAM: nothing to decode, read from the page cache")
    out["why"] = why
    return out


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text, a section a block."""
    lines = []
    for section, value in report.items():
        if isinstance(value, list):
            lines.append(f"{section}:" + ("" if value else " none"))
            for item in value:
                lines.append("  " + ", ".join(f"{k} {v}" for k, v in item.items()))
            continue
        lines.append(f"{section}:")
        for key, item in value.items():
            if isinstance(item, list) and key == "why":
                lines.extend(f"  - {line}" for line in item)
            elif isinstance(item, list):
                lines.append(f"  {key}: {item}")
            elif isinstance(item, dict):
                lines.append(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in item.items()))
            else:
                lines.append(f"  {key}: {item}")
    return "\n".join(lines)
