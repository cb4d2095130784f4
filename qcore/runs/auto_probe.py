"""``auto`` measures before it trusts an order: the first time a sweep needs a static (or dynamic) INT8 spec run by
``backend="auto"`` for a (model, batch size, input size) this machine has not measured, each backend of
:data:`qcore.backends.auto.ORDER` that can run the spec is built (quantized and calibrated on the sweep's own
calibration batches, its compiled program made or loaded from :mod:`qcore.backends.buildcache`: the sweep's own
row of that spec then loads it) and timed on the sweep's input for :data:`PROBE_SECONDS` seconds each (one
clearly slower than the fastest after a second is cut short: :func:`qcore.runs.probe_measure._time`), interleaved
(an engine with its own thread pool in a block of its own, after torch's), with the sweep's own timing
(:func:`qcore.metrics.measure.time_interleaved`), in processes of their own (:mod:`qcore.runs.probe_measure`: no
other engine's thread pool is left in the sweep's process, a cancel stops a build halfway, a backend that crashes
is recorded as failed, and the blocks' builds run side by side, one per core, while their timings run one after
another; then the fastest and the fastest of another process, if within the cut ratio, are timed again in turns:
the runoff, :meth:`qcore.runs.probe_measure._Children.runoff`). The p50s are stored with
:func:`qcore.backends.auto.record_measurement` (a backend that failed to build with its reason, never picked
before a measured one), so :func:`qcore.backends.auto.choose` picks the fastest, this sweep and every later one on
this machine and torch; the rows of the kind probed say what was measured and when.

The sweep's progress names the phase (:data:`PHASE`: "measuring which INT8 backend is fastest here: pt2e and xnnpack
side by side, 3/3", then "... timing fx, pt2e");
a cancel stops the probe's process at once and records nothing; a probe that cannot run at all is named in the
rows' notes and the sweep goes on with what ``auto`` knew. An unreadable
``auto-backends.json`` (or another machine's) is named in the rows' notes and measured again (the file is
replaced atomically). ``SweepConfig.auto_probe=False`` (``--auto-probe off``, the Sweep page's Advanced checkbox)
or ``QCORE_AUTO_PROBE=off`` in the environment (the test suite's default) skips it: qcore's default order at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from qcore.backends import auto
from qcore.env.space import is_out_of_space
from qcore.quant.spec import QuantSpec
from qcore.runs.probe_measure import (
    CUT_AFTER_S,
    CUT_RATIO,
    PHASE,
    RUNOFF_SLICE_S,
    RUNOFF_TURNS,
    backend_table,
    measure_apart,
)

__all__ = ["PROBE_SECONDS", "PHASE", "PROBED_KINDS", "ENV", "enabled", "candidates", "plan", "probe_auto",
           "measure_candidates"]

PROBE_SECONDS = 2.0  # of timing per backend (3 s until session 14); a first build comes on top (then cached)
PROBED_KINDS = ("static", "dynamic")
ENV = "QCORE_AUTO_PROBE"  # "off": no probe on this machine, whatever a sweep's settings say
# How the candidates are built and timed: in a process of their own (qcore.runs.probe_measure); the tests' fake
# backends are registered in theirs only, so they use measure_here
measure_candidates = measure_apart


def enabled(config) -> bool:
    """Whether a sweep of ``config`` (a SweepConfig or its dict) may probe: its ``auto_probe`` and :data:`ENV`."""
    on = config.get("auto_probe", True) if isinstance(config, dict) else config.auto_probe
    return bool(on) and os.environ.get(ENV, "").strip().lower() not in ("off", "0", "false", "no")


def candidates(spec: QuantSpec, device: str, table: dict | None = None) -> list[str]:
    """The backends of :data:`~qcore.backends.auto.ORDER` for ``spec``'s kind that can run it on ``device``."""
    table = backend_table() if table is None else table
    return [n for n in auto.ORDER.get(spec.kind, ()) if n in table and spec.kind in table[n].kinds
            and table[n].problem(spec, device) is None]  # fmt: skip


def plan(specs: Sequence[QuantSpec], device: str, model: str, batch_size: int, input_size: int
         ) -> list[tuple[str, QuantSpec, list[str]]]:  # fmt: skip
    """``(kind, spec, backends)`` for each kind of :data:`PROBED_KINDS` that ``specs`` run on ``auto`` with no
    measurement of this point here and more than one backend to choose from; ``spec`` is the one the most
    backends can run (the first of those)."""
    out, table = [], None
    for kind in PROBED_KINDS:
        todo = [s for s in specs if s.backend == "auto" and s.mode != "qat" and s.kind == kind]
        if not todo or auto.measured_point(kind, model, batch_size, input_size, device=device) is not None:
            continue
        table = backend_table() if table is None else table
        names = {s: candidates(s, device, table) for s in todo}
        # the most backends, then no post-training algorithm (it changes weights, not kernels: time saved)
        spec = max(todo, key=lambda s: (len(names[s]), not s.asks_ptq))  # the first of equals
        if len(names[spec]) > 1:
            out.append((kind, spec, names[spec]))
    return out


def probe_auto(p, specs: Sequence[QuantSpec], say: Callable[[str], None], cancel: Callable[[], bool],
               seconds: float = PROBE_SECONDS) -> dict[QuantSpec, list[str]]:  # fmt: skip
    """Probe every kind :func:`plan` names for a prepared sweep ``p`` (:class:`qcore.runs.sweep.Prepared`) and its
    ``specs``; returns the notes for the rows of the specs whose backend ``auto`` chooses from what was probed
    (empty when nothing was probed or the probe was cancelled). ``say(message)`` reports progress; ``cancel()`` is
    checked between steps."""
    if not any(s.backend == "auto" and s.mode != "qat" and s.kind in PROBED_KINDS for s in specs):
        return {}  # nothing for auto to choose: the prepared sweep is not even read
    if not enabled(p.config):
        return {}
    c = p.config
    notes = {}
    for kind, spec, names in plan(specs, p.device, c.model, c.batch_size, int(p.example.shape[-1])):
        try:
            note = _probe(p, kind, spec, names, say, cancel, seconds)
        except Exception as exc:  # the probe is an aid: the sweep goes on in the order auto has (a full disk ends it)
            if is_out_of_space(exc):
                raise
            note = f"auto could not measure which {kind} INT8 backend is fastest here ({type(exc).__name__}: {exc})"
        if note is None:  # cancelled: nothing recorded, the sweep's own check stops it
            break
        notes.update({s: [note] for s in specs if s.backend == "auto" and s.mode != "qat" and s.kind == kind})
    return notes


def _probe(p, kind: str, spec: QuantSpec, names: list[str], say, cancel, seconds: float) -> str | None:
    c, started = p.config, time.perf_counter()
    size = int(p.example.shape[-1])
    problem = auto.file_problem()  # named in the note before the file is replaced
    measured = measure_candidates(p.loaded.model, spec, p.calib, p.example, p.device, names, seconds, say, cancel)
    if measured is None or cancel():
        return None
    p50, failed, cut, runoff = measured["p50"], measured["failed"], measured["cut"], measured["runoff"]
    stamp = time.strftime("%Y-%m-%d %H:%M")
    source = f"auto probe, {stamp}, {seconds:g} s each"
    stored = f"stored in {auto.MEASURED_FILE}"
    try:
        auto.record_measurement(kind, c.model, c.batch_size, size, p50, source, failed=failed, device=p.device)
    except Exception as exc:  # a full disk ends the sweep (its own message); another failure only goes unstored
        if is_out_of_space(exc):
            raise
        stored = f"not stored ({type(exc).__name__}: {str(exc)[:120]})"
    short = f" (timed {CUT_AFTER_S:g} s only: over {CUT_RATIO:g}x the fastest)"
    timed = ", ".join(f"{n} p50 {v:.2f} ms" + (short if n in cut else "")
                      for n, v in sorted(p50.items(), key=lambda kv: kv[1])) or "none built"  # fmt: skip
    if runoff:
        timed += (f" ({' and '.join(runoff)} from a runoff: {RUNOFF_TURNS} turns each of {RUNOFF_SLICE_S:g} s, "
                  "alternating, as the machine's speed moves between blocks)")  # fmt: skip
    note = (f"auto measured which {kind} INT8 backend is fastest here ({c.model} batch {c.batch_size} at "
            f"{size}x{size}, {spec.label()}, {seconds:g} s each, {stamp}, {time.perf_counter() - started:.0f} s "
            f"in all): {timed}")  # fmt: skip
    note += "".join(f"; {n} failed to build: {why}" for n, why in failed.items())
    return note + f"; {stored}" + (f" ({problem}: measured again)" if problem else "")
