"""Keep freed memory in the process (glibc malloc) instead of handing it back to the OS after every step.

Why: a training step allocates and frees a few hundred MB of activations. glibc serves large blocks with fresh
``mmap`` pages and unmaps them on ``free``, so every step faults the same memory in again: ~30,000 minor page
faults and ~0.06 s of kernel time per MediQ-GAN iteration (paper configuration, 2-core CPU). Raising the mmap and
trim thresholds lets freed blocks be reused: the faults drop ~10x and the iteration is ~4 % faster
(benchmarks/RESULTS.md). The price is that the process keeps its peak heap until it exits, which suits a training
or benchmark process, hence it is applied there only. ``QMEDGEN_KEEP_HEAP=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameter numbers
_applied = False


def retain_freed_memory() -> bool:
    """Tune glibc malloc once per process; True when the tuning is in effect (False off glibc or when disabled)."""
    global _applied
    if _applied:
        return True
    if os.environ.get("QMEDGEN_KEEP_HEAP", "1") == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # blocks up to 1 GiB come from the reusable heap, not fresh mmaps (glibc builds that cap the threshold accept
    # 32 MiB, their documented maximum on 64-bit systems)
    mmap_ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 or mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
    trim_ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # never shrink the heap on free
    pad_ok = mallopt(_M_TOP_PAD, 64 << 20) == 1  # grow it in 64 MiB steps
    _applied = mmap_ok and trim_ok and pad_ok
    return _applied
