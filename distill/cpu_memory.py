"""Keep the memory torch frees on the CPU inside the process instead of handing it back to the OS.

glibc's malloc serves large blocks with ``mmap`` and trims the top of its heap when enough is free;
a training step frees and re-allocates the same activation-sized blocks, so every step asks the
kernel for fresh zeroed pages again (for the tiny student, 10-19x the page faults and 8-11% of
the run's CPU time in the kernel). Turning both off (``M_MMAP_MAX=0``, ``M_TRIM_THRESHOLD`` at its
largest) lets malloc reuse the pages: 7-13% faster training, bit-identical weights, a 1.3-1.6x
higher peak resident size (the process keeps its peak heap). Measured by ``benchmarks/cpu_memory.py``
(docs/performance.md).
"""

from __future__ import annotations

import ctypes
import platform

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Stop glibc's malloc from returning freed memory to the OS (process-wide, for the rest of the
    process). Returns whether it applied: False where the C library is not glibc (macOS, musl)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _INT_MAX))
