"""Where qcore keeps what it makes: baselines, the run database, unpacked uploads.

Everything lives under one data directory, ``$QCORE_HOME`` if set, else
``$XDG_DATA_HOME/qcore`` (usually ``~/.local/share/qcore``). Nothing is written into
the source tree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from qcore.env.space import ensure_free, no_space_from

__all__ = ["data_home", "subdir", "atomic_write_bytes", "damaged_name"]


def data_home() -> Path:
    """The user's qcore data directory (created on first use)."""
    env = os.environ.get("QCORE_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        home = Path(xdg) / "qcore"
    home.mkdir(parents=True, exist_ok=True)
    return home


def subdir(name: str) -> Path:
    """A named folder inside :func:`data_home` (``baselines``, ``uploads``, ...)."""
    path = data_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash never leaves a half-written file; a disk without room for it
    raises :class:`qcore.env.space.NoSpace` (naming the folder, the MB free and needed) before anything is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_free(path.parent, len(data), path.name)  # a named message, not a half-written file, when it won't fit
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if full := no_space_from(exc, path.parent, len(data), path.name):
            raise full from exc
        raise


def damaged_name(path: Path, *companions: str) -> Path:
    """A free name beside ``path`` to keep a damaged copy under: ``<name>.damaged-<time>``, with ``-2``, ``-3`` ...
    added when that name (or ``<name><companion>`` for a file moved with it, such as ``-wal``) is taken, so a second
    damage in the same second never replaces the first one's copy."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        out = path.with_name(f"{path.name}.damaged-{stamp}" + (f"-{n}" if n > 1 else ""))
        if not any(Path(f"{out}{c}").exists() for c in ("", *companions)):
            return out
    raise FileExistsError(f"no free name for a damaged copy of {path}")
