"""A sweep stopped by a full disk: the named message, with what is kept and how to go on.

:func:`raise_if_full` turns what a write that ran out of space raised (during a build, an artifact, a row
committed to the database) into :class:`qcore.env.space.NoSpace` naming the folder, the MB free and needed,
and the ``--resume`` command of the job, so the CLI and the app say that instead of a traceback.
"""

from __future__ import annotations

from qcore.env.paths import data_home
from qcore.env.space import NoSpace, no_space_from

__all__ = ["resume_hint", "raise_if_full"]


def resume_hint(sweep_id: str) -> str:
    """What a sweep stopped by a full disk says after the space figures."""
    if not sweep_id:
        return "free some space and run it again"
    return f"the results so far are kept; 'python -m qcore sweep --resume {sweep_id}' when space is freed"


def raise_if_full(exc: BaseException, sweep_id: str = "") -> None:
    """Raise :class:`NoSpace` (with :func:`resume_hint`) from ``exc`` when it is a write that ran out of space."""
    full = no_space_from(exc, data_home())
    if full is not None:
        raise NoSpace(full.folder, full.free, full.needed, full.what, resume_hint(sweep_id)) from exc
