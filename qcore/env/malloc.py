"""glibc's malloc told to keep freed memory for the next call, in the processes that time models.

An inference call allocates its activations (megabytes to a few hundred) and frees them at the end. glibc's
defaults give memory above a moving threshold back to the kernel (``munmap``, or trimming the heap's top), so
the next call takes fresh pages, and each first touch of a page is a page fault the kernel must zero. Raising the
mmap threshold to its maximum (32 MB on 64-bit), the trim threshold to 4 GB and the top pad to 256 MB keeps that
memory in the process for reuse. Measured (docs/benchmarks.md, issue 30; pt2e INT8 at 224x224, 2 threads,
three fresh processes each way): mobilenet_v2 at batch 32 went from 68-71 to 44-47 ms; resnet18 at batch 32 kept
its p50 but its p90/p50 went from 1.04-1.27 to 1.03-1.04; mobilenet_v3_small at batch 32 and resnet18 at batch 1
were unchanged within their spread from one process to the next. PyTorch's CPU tuning guide reports the same kind
of gain from jemalloc and tcmalloc. The cost: a process keeps what it freed, up to the trim threshold, instead of
returning it.

:func:`keep_freed_memory` is called at the start of the worker, of every CLI command, of the auto probe's process
and of a cluster node's latency task, so FP32 and the quantized model are timed under the same allocator.
Elsewhere (not glibc: macOS, musl) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["ALLOCATOR", "SETTINGS", "keep_freed_memory"]

# mallopt's parameters (glibc's malloc.h) and the values set.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {"M_MMAP_THRESHOLD": 32 << 20, "M_TRIM_THRESHOLD": 4 << 30, "M_TOP_PAD": 256 << 20}
_PARAMS = {"M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD, "M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD, "M_TOP_PAD": _M_TOP_PAD}
# What timings taken in such a process are marked with (auto's measurements): a new setting is a new allocator.
ALLOCATOR = "glibc keeps freed memory (mmap 32 MB, trim 4 GB, top pad 256 MB)"
_applied: str | None = None


def keep_freed_memory() -> str:
    """Apply :data:`SETTINGS` through glibc's ``mallopt`` (once per process); returns what was done, in words."""
    global _applied
    if _applied is not None:
        return _applied
    if not sys.platform.startswith("linux"):
        _applied = f"malloc left as it is ({sys.platform}: not glibc)"
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _applied = "malloc left as it is (no glibc mallopt here)"
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    failed = [name for name, value in SETTINGS.items() if mallopt(_PARAMS[name], value) != 1]
    _applied = (f"malloc: mallopt refused {', '.join(failed)}" if failed else
                "malloc keeps freed memory (glibc mmap threshold 32 MB, trim threshold 4 GB, top pad 256 MB)")
    return _applied
