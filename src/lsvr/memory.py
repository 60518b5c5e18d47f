"""Keep freed image-sized buffers in the process instead of handing them back to the OS.

glibc serves allocations above 128 KiB with mmap and returns them on free, and trims the
heap top above 128 KiB: a decoded photo (500 x 375 x 3 = 560 KiB), its resized copy and
every batch buffer are then page-faulted in afresh, one fault per 4 KiB, each time. That
was 5-20% of `lsvr prepare`'s time. Raising both thresholds keeps such buffers for reuse;
the cost is that up to a few hundred MB of freed memory stays with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Set glibc's mmap and trim thresholds; False where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, AttributeError):
        return False


def resident_mb() -> float:
    """This process's resident memory now, in MiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
