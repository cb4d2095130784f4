"""qcore.service.worker.ensure_worker: one start while a job waits, however often the page polls; children reaped."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from qcore.service import worker

# A stand-in worker that takes a while before it would reach its lock (as importing torch does), then exits: it
# waits until the test releases it (never a fixed sleep, which a loaded machine could outlast between two polls).
HELD = """import os, sys, time
end = time.monotonic() + 300
while not os.path.exists(sys.argv[1]) and time.monotonic() < end:
    time.sleep(0.05)
"""


@pytest.fixture
def release(tmp_path, monkeypatch):
    """Start stand-in workers that run until ``release()`` is called (at the latest when the test ends)."""
    flag = tmp_path / "release"
    monkeypatch.setattr(worker, "_worker_command", lambda: [sys.executable, "-c", HELD, str(flag)])

    def go() -> None:
        flag.touch()

    yield go
    go()
    for proc in list(worker._children):
        proc.wait(120)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return None  # gone: reaped


def test_polls_while_the_worker_starts_start_it_once_and_it_is_reaped(release):
    started = [worker.ensure_worker() for _ in range(5)]  # five polls before the first worker has its lock
    assert started == [True, False, False, False, False]
    pid = int(worker.start_path().read_text().split()[0])
    release()
    deadline = time.monotonic() + 120  # a python's exit on a loaded machine: seconds at most
    while _state(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state(pid) is None, f"worker {pid} is still there ({_state(pid)}): not exited, or a zombie not reaped"
    assert worker.ensure_worker() is True  # the one that started is gone: the next poll starts another


def test_concurrent_polls_start_one_worker(release):
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(worker.ensure_worker())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_a_stale_start_file_does_not_block_a_start(release):
    worker.start_path().write_text(f"999999999 {time.time()}")  # a pid that does not exist
    assert worker.ensure_worker() is True
    worker.start_path().write_text(f"1 {time.time() - worker.START_GRACE_S - 1}")  # alive, but long ago
    release()
    for proc in list(worker._children):
        proc.wait(120)
    assert worker.ensure_worker() is True
