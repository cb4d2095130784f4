"""One trainer per baseline: a file lock next to the baseline's file (``<baseline>.lock``).

:func:`qcore.nets.train.train_baseline` takes it whoever calls it (the app's worker, ``python -m qcore train``, a CLI
sweep), so two processes that want the same baseline never train it twice: the second waits for the first
(reporting that it waits) and then loads the file the first one saved. ``fcntl.flock`` locks belong to the
open file, so a process that dies (killed, out of memory) releases its lock with it; the lock file itself stays
(removing it could let a third process lock a file that a second one is about to open).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["lock_path", "held_elsewhere", "hold"]


def lock_path(baseline: Path) -> Path:
    """``<model>__<dataset>__<key>.lock`` beside ``<model>__<dataset>__<key>.safetensors``."""
    return Path(baseline).with_suffix(".lock")


def held_elsewhere(baseline: Path) -> bool:
    """True while another open file (another process, as a rule) holds the training lock of ``baseline``."""
    path = lock_path(baseline)
    if not path.exists():
        return False
    try:
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:  # a folder we may not write to (a shipped baseline): nobody trains there
        return False
    return False


@contextmanager
def hold(baseline: Path, on_wait: Callable[[float], None] | None = None, poll_s: float = 1.0) -> Iterator[bool]:
    """Hold the training lock of ``baseline`` for the ``with`` block; yields whether it had to wait.

    While another process holds it, ``on_wait(seconds waited)`` is called every ``poll_s`` seconds (it may
    raise to stop waiting, e.g. when the job is cancelled)."""
    path = lock_path(baseline)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        waited, start = False, time.monotonic()
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = True
                if on_wait is not None:
                    on_wait(time.monotonic() - start)
                time.sleep(poll_s)
        try:
            yield waited
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
