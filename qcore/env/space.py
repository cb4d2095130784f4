"""Free space on the disk of the data folder, checked before something large is written.

:func:`ensure_free` raises :class:`NoSpace` (a named message: the folder, the MB free and needed) before a
write that would not fit; :func:`no_space_from` turns what a write that ran out of space raised instead (an
``OSError`` ENOSPC, SQLite's "database or disk is full", torch's zip writer's "unexpected pos") into the same
error, so the user never reads a C++ assertion or a bare traceback about a full disk.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

__all__ = ["MARGIN_BYTES", "NoSpace", "free_bytes", "ensure_free", "is_out_of_space", "no_space_from"]

# kept free beyond what a write needs: SQLite's journal, the file system's own blocks
MARGIN_BYTES = 8 * 1024 * 1024
_FULL_WORDS = ("no space left", "database or disk is full", "disk full", "unexpected pos", "file too large")


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 10e6 else f"{n / 1e6:,.0f} MB"


class NoSpace(OSError):
    """The disk holding ``folder`` has ``free`` bytes, ``needed`` would not fit; ``hint`` says what to do."""

    def __init__(self, folder: Path | str, free: int | None, needed: int | None, what: str = "", hint: str = ""):
        self.folder, self.free, self.needed, self.what, self.hint = Path(folder), free, needed, what, hint
        super().__init__(errno.ENOSPC, self._text())

    def _text(self) -> str:
        free = f"{_mb(self.free)} free" if self.free is not None else "the disk is full"
        needed = f", {_mb(self.needed)} needed" if self.needed else ""
        what = f" for {self.what}" if self.what else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"no space left in {self.folder}{what}: {free}{needed}{hint}"

    def with_hint(self, hint: str) -> NoSpace:
        """The same error, with ``hint`` (what is kept, how to go on) at the end of its message."""
        return NoSpace(self.folder, self.free, self.needed, self.what, hint)

    def __str__(self) -> str:
        return self._text()

    def __reduce__(self):  # pickled whole (a cluster task, a worker's queue): not as OSError's (errno, text)
        return NoSpace, (self.folder, self.free, self.needed, self.what, self.hint)


def free_bytes(path: Path | str) -> int:
    """Bytes free for this user on the disk that holds ``path`` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def ensure_free(path: Path | str, needed_bytes: int, what: str = "") -> None:
    """Raise :class:`NoSpace` unless ``needed_bytes`` (plus :data:`MARGIN_BYTES`) fit on ``path``'s disk.

    ``path`` is the folder the write goes to; ``what`` names the write in the message ("a compiled build")."""
    try:
        free = free_bytes(path)
    except OSError:  # a folder we cannot stat: the write itself will say what is wrong
        return
    if free < int(needed_bytes) + MARGIN_BYTES:
        raise NoSpace(path, free, int(needed_bytes) + MARGIN_BYTES, what)


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that ran out of space (ENOSPC, EFBIG, SQLITE_FULL, torch's zip writer)."""
    if isinstance(exc, NoSpace):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
        return True
    text = str(exc).lower()
    return isinstance(exc, (OSError, RuntimeError)) and any(w in text for w in _FULL_WORDS) or \
        type(exc).__name__ == "OperationalError" and "database or disk is full" in text


def no_space_from(exc: BaseException, folder: Path | str, needed: int | None = None, what: str = "") -> NoSpace | None:
    """:class:`NoSpace` for ``folder`` when ``exc`` is a write that ran out of space, else None."""
    if isinstance(exc, NoSpace):
        return exc
    if not is_out_of_space(exc):
        return None
    try:
        free = free_bytes(folder)
    except OSError:
        free = None
    return NoSpace(folder, free, needed, what)
