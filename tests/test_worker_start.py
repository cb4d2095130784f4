"""qcore.worker.ensure_worker: one start while a job waits, however often the page polls; children reaped."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from qcore import worker

# A stand-in worker that takes a while before it would reach its lock (as importing torch does), then exits.
SLOW_START = [sys.executable, "-c", "import time; time.sleep(1.0)"]


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return None  # gone: reaped


def test_polls_while_the_worker_starts_start_it_once_and_it_is_reaped(monkeypatch):
    monkeypatch.setattr(worker, "_worker_command", lambda: SLOW_START)
    started = [worker.ensure_worker() for _ in range(5)]  # five polls before the first worker has its lock
    assert started == [True, False, False, False, False]
    pid = int(worker.start_path().read_text().split()[0])
    deadline = time.time() + 20
    while _state(pid) is not None and time.time() < deadline:
        time.sleep(0.1)
    assert _state(pid) is None  # exited and reaped: no zombie of the server left behind
    assert worker.ensure_worker() is True  # the one that started is gone: the next poll starts another


def test_concurrent_polls_start_one_worker(monkeypatch):
    monkeypatch.setattr(worker, "_worker_command", lambda: SLOW_START)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(worker.ensure_worker())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_a_stale_start_file_does_not_block_a_start(monkeypatch):
    monkeypatch.setattr(worker, "_worker_command", lambda: SLOW_START)
    worker.start_path().write_text(f"999999999 {time.time()}")  # a pid that does not exist
    assert worker.ensure_worker() is True
    worker.start_path().write_text(f"1 {time.time() - worker.START_GRACE_S - 1}")  # alive, but long ago
    for proc in list(worker._children):
        proc.wait()
    assert worker.ensure_worker() is True
