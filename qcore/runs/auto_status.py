"""What Home says of ``auto``'s measurements on this machine (:mod:`qcore.runs.auto_probe`), in one line."""

from __future__ import annotations

from qcore.backends import auto
from qcore.quant.spec import QuantSpec
from qcore.runs.auto_probe import candidates
from qcore.runs.estimate import duration_text, probe_seconds

__all__ = ["first_probe_seconds", "status_text"]


def first_probe_seconds(device: str = "cpu") -> float:
    """About how long a first probe of the default static INT8 spec takes here (0: at most one backend runs it)."""
    names = candidates(QuantSpec("int8"), device)
    return probe_seconds(names) if len(names) > 1 else 0.0


def status_text(device: str = "cpu") -> str:
    """One line: whether ``auto`` has measurements on this machine and what the newest says, or what the first
    sweep will measure and about how long that takes.

    ``auto: measured on this machine for resnet18 batch 1 (pt2e fastest), 2026-12-05``"""
    entries = [e for e in auto.load_measured() if e["p50_ms"]]
    if entries:
        e = max(entries, key=lambda e: str(e.get("measured_at", "")))
        fastest = min(e["p50_ms"], key=e["p50_ms"].get)
        more = f"; {len(entries) - 1} other point(s) measured" if len(entries) > 1 else ""
        return (f"auto: measured on this machine for {e.get('model')} batch {e.get('batch_size')} "
                f"({fastest} fastest), {str(e.get('measured_at', ''))[:10]}{more}")  # fmt: skip
    problem = auto.file_problem()
    seconds = first_probe_seconds(device)
    if not seconds:
        return "auto: at most one INT8 backend runs here: nothing to measure" + (f" ({problem})" if problem else "")
    return ("auto: not measured on this machine yet; the first sweep measures which INT8 backend is fastest "
            f"(about {duration_text(seconds)})" + (f"; {problem}" if problem else ""))  # fmt: skip
