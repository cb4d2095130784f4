"""The uploads folder: a record beside each upload (the user's file name, what it holds), and a quota.

An upload is a checkpoint file (``uploads/<hash>.pt``) or an unpacked zip (``uploads/datasets/<hash>/``);
its record is ``<that path>.json``. The folder's total size is capped at :func:`quota_bytes` (5 GB, or
``$QCORE_UPLOAD_QUOTA_MB``): after each upload the oldest ones are removed until the rest fits, never
the one just stored and never one that a queued or running job uses. An upload larger than the whole
quota is refused. A user can also delete any upload (:func:`remove`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from qcore.env.paths import atomic_write_bytes

__all__ = ["DEFAULT_QUOTA_BYTES", "quota_bytes", "Upload", "record_path", "write_record", "read", "disk_bytes",
           "remove", "enforce"]

DEFAULT_QUOTA_BYTES = 5_000_000_000


def quota_bytes() -> int:
    env = os.environ.get("QCORE_UPLOAD_QUOTA_MB")
    return int(float(env) * 1e6) if env else DEFAULT_QUOTA_BYTES


@dataclass
class Upload:
    kind: str  # "checkpoint" or "dataset"
    path: Path  # the stored file (checkpoint) or folder (dataset)
    name: str  # the user's file name
    bytes: int
    uploaded: float
    info: dict  # what it holds (tensors and values; classes and images per class ...)


def record_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".json")


def write_record(path: Path, kind: str, name: str, size: int, uploaded: float | None = None, **info) -> None:
    body = {"kind": kind, "name": name, "bytes": int(size), "uploaded": uploaded or time.time(), "info": info}
    atomic_write_bytes(record_path(path), json.dumps(body).encode())


def read(path: Path, kind: str) -> Upload:
    """The upload at ``path`` with its record (a name made from the hash when the record is missing)."""
    path = Path(path)
    try:
        body = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        body = {}
    size = body.get("bytes")
    if size is None and path.exists():  # stored before records were kept: measured once, then recorded
        size, when = disk_bytes(path), _mtime(path)
        try:
            write_record(path, kind, "", size, uploaded=when)
        except OSError:
            pass
    size = 0 if size is None else size
    when = body.get("uploaded") or _mtime(path)
    return Upload(kind, path, str(body.get("name") or f"upload {path.name[:8]}"), int(size), float(when),
                  dict(body.get("info") or {}))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for here, _, names in os.walk(path):
        for n in names:
            try:
                total += (Path(here) / n).lstat().st_size
            except OSError:
                pass
    return total


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1_000_000 else f"{n / 1e6:,.0f} MB"


def remove(upload: Upload) -> None:
    """Delete an upload and its record."""
    if upload.path.is_dir():
        shutil.rmtree(upload.path, ignore_errors=True)
    else:
        upload.path.unlink(missing_ok=True)
    record_path(upload.path).unlink(missing_ok=True)


def enforce(uploads: list[Upload], keep: Path, in_use: set[Path], quota: int | None = None) -> list[Upload]:
    """Remove the oldest uploads (not ``keep``, not ``in_use``) until the total fits ``quota``; return them.
    Raises ValueError when ``keep`` alone is larger than the quota (the caller removes it)."""
    quota = quota_bytes() if quota is None else quota
    keep = Path(keep)
    mine = next((u for u in uploads if u.path == keep), None)
    if mine is not None and mine.bytes > quota:
        raise ValueError(f"it takes {_size(mine.bytes)} once stored; the uploads quota is {_size(quota)}")
    total = sum(u.bytes for u in uploads)
    removed = []
    for u in sorted(uploads, key=lambda u: u.uploaded):
        if total <= quota:
            break
        if u.path == keep or u.path in in_use:
            continue
        remove(u)
        removed.append(u)
        total -= u.bytes
    return removed
