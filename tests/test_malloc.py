"""qcore.env.malloc: glibc keeps freed memory in the processes that time models. The oracle is the kernel's own
count of page faults (``getrusage``'s minor faults): an inference-like loop that allocates, touches and frees two
20 MB buffers per call takes fresh pages every call under glibc's defaults, and (almost) none once the settings
are applied."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qcore.env import malloc

_LOOP = r"""
import ctypes, ctypes.util, json, resource, sys
if sys.argv[1] == "keep":
    from qcore.env.malloc import keep_freed_memory
    said = keep_freed_memory()
else:
    said = ""
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 20 << 20
def call():  # one "inference": two activation buffers, written, freed
    a, b = libc.malloc(size), libc.malloc(size)
    ctypes.memset(a, 1, size)
    ctypes.memset(b, 1, size)
    libc.free(b)
    libc.free(a)
for _ in range(3):
    call()  # warm-up: glibc's dynamic thresholds settle
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    call()
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, "said": said}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _LOOP, mode], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    default, keep = _faults("default"), _faults("keep")
    pages = 20 * 2 * (20 << 20) // 4096  # what 20 calls touch: every page fresh each call under the defaults
    assert default["faults"] > pages / 2, default  # glibc's defaults give the buffers back: fresh pages each call
    assert keep["faults"] < pages / 50, keep  # kept: reused, not faulted in again
    assert keep["said"].startswith("malloc keeps freed memory")


def test_applied_once_per_process_and_said_in_words(monkeypatch):
    monkeypatch.setattr(malloc, "_applied", None)
    monkeypatch.setattr(malloc.sys, "platform", "darwin")
    assert malloc.keep_freed_memory() == "malloc left as it is (darwin: not glibc)"
    monkeypatch.setattr(malloc.sys, "platform", "linux")
    assert malloc.keep_freed_memory() == "malloc left as it is (darwin: not glibc)"  # once: the first answer stays


def test_the_processes_that_time_models_apply_it(monkeypatch):
    from qcore import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1))
    assert cli.main(["columns"]) == 0
    assert calls == [1]
    import inspect

    from qcore.cluster import tasks
    from qcore.runs import probe_measure
    from qcore.service import worker

    for fn in (worker.serve, probe_measure.main, tasks.latency_task._function):
        assert "keep_freed_memory()" in inspect.getsource(fn), fn
