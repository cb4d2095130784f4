"""Whether the process recorded on a running job still runs it: more than its process ID.

A PID alone is not enough: a worker killed, its PID taken by another process, would leave its job "running"
for as long as that process lives (no Resume, and Cancel asks a process that never reads it). So a job records
with the process that claimed it that process's start time (:func:`process_start`: Linux's ``/proc/<pid>/stat``
field 22, in clock ticks since boot; psutil's create time elsewhere), and the app's worker writes a heartbeat
on its job every :data:`HEARTBEAT_S` seconds from a thread of its own. A job's process is alive
(:func:`runner_alive`) when its PID is, not a zombie, started when the job says, and its heartbeat, when it has
one, is younger than :data:`STALE_S`. Jobs recorded before these existed (no start, no heartbeat) are judged
by their PID alone.
"""

from __future__ import annotations

import os
import time

__all__ = ["HEARTBEAT_S", "STALE_S", "pid_alive", "process_start", "runner_alive"]

HEARTBEAT_S = 10.0  # how often the worker writes its job's heartbeat
# A heartbeat older than this: the worker is gone or hung. Far above HEARTBEAT_S: a write can wait 30 s for the
# database's lock, and a loaded 2-core machine can starve a thread for a while.
STALE_S = 180.0


def pid_alive(pid: int | None) -> bool:
    """``pid`` names a process that runs (a zombie, a finished child not yet reaped, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_start(pid: int | None) -> float | None:
    """When process ``pid`` started, as a number that is the same for as long as it runs and differs for a
    later process given the same PID: ``/proc/<pid>/stat``'s starttime (clock ticks since boot), else psutil's
    create time; None when neither can tell (no such process, no /proc and no psutil)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            # the command name (field 2) is in parentheses and may hold spaces or ")": fields 3.. follow the last ")"
            return float(fh.read().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil  # optional

        return float(psutil.Process(pid).create_time())
    except Exception:  # no psutil, no such process, no permission
        return None


def runner_alive(pid: int | None, start: float | None, heartbeat: float | None, now: float | None = None) -> bool:
    """The process recorded on a running job still runs it: ``pid`` alive, started at ``start`` (when recorded
    and readable), and ``heartbeat`` (when recorded) younger than :data:`STALE_S`."""
    if not pid_alive(pid):
        return False
    if start is not None and (current := process_start(pid)) is not None and abs(current - start) > 1e-3:
        return False  # the PID was reused by another process
    return heartbeat is None or (time.time() if now is None else now) - heartbeat <= STALE_S
