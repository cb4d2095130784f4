"""Progress that names a first C++ build: a sweep's progress says "building the compiled package (first time,
C++)" while a build of :mod:`qcore.backends.buildcache` runs (minutes, the first time per model, spec and shape)
instead of
the phase that asked for the program (evaluating, quantizing), and says that phase again once the build is done.

>>> said = []
>>> p = SaysBuilds(lambda d, t, m: said.append(m))
>>> p(1.33, 3, "INT8 per-tensor min-max asym static [pt2e] · evaluating")
>>> p.building("aoti", True); p.building("aoti", False)
>>> said[1:]
['INT8 per-tensor min-max asym static [pt2e] · building the compiled package (first time, C++)', \
'INT8 per-tensor min-max asym static [pt2e] · evaluating']
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BUILD_PHASE", "SaysBuilds", "within"]

BUILD_PHASE = "building the compiled package (first time, C++)"


class SaysBuilds:
    """A ``progress(done, total, message)`` that remembers its last report; :meth:`building` (a listener of
    :func:`qcore.backends.buildcache.on_build`) says it again with :data:`BUILD_PHASE`, then as it was."""

    def __init__(self, progress: Callable[[float, int, str], None]) -> None:
        self.progress, self.last = progress, (0.0, 1, "")

    def __call__(self, done: float, total: int, message: str) -> None:
        self.last = (done, total, message)
        self.progress(done, total, message)

    def building(self, kind: str, started: bool) -> None:
        done, total, message = self.last
        self.progress(done, total, f"{message.split(' · ')[0]} · {BUILD_PHASE}" if started else message)


def within(progress: Callable[[float, int, str], None], done: float, total: int,
           label: str) -> Callable[[float, int, str], None]:
    """Progress inside one spec (a QAT fine-tune, AdaRound's layers): the sweep's count stays at ``done``, the
    message says how far the spec is."""
    return lambda d, t, msg: progress(done, total, f"{label}: {msg} ({d / max(t, 1):.0%})")
