"""The cluster as the worker last saw it, in a small JSON file the app reads (the app never calls Ray).

The worker (the Ray driver) writes ``data_home()/cluster.json`` when it connects and after each job:
the address, each alive node (id, host, CPUs, ``qcore_bench`` slots), the totals, when it was read, or the
error that kept it from connecting. No Ray import here.
"""

from __future__ import annotations

import json
import time

from qcore.env.paths import atomic_write_bytes, data_home

__all__ = ["snapshot_path", "write_snapshot", "read_snapshot"]


def snapshot_path():
    return data_home() / "cluster.json"


def write_snapshot(info: dict) -> None:
    atomic_write_bytes(snapshot_path(), json.dumps({**info, "checked_at": time.time()}).encode())


def read_snapshot() -> dict | None:
    """The last snapshot, or None when no worker has written one (or it cannot be read)."""
    try:
        return json.loads(snapshot_path().read_text())
    except (OSError, ValueError):
        return None
