"""What ``backend="auto"`` runs a spec on, and why: the one place this policy lives.

The rule: the first backend of :data:`ORDER` (for the spec's kind, ``QuantSpec.kind``) that can
run the spec here, unless this machine has measurements. Which INT8 path is fastest depends on the CPU (VNNI or
not, AVX-512 or AVX2, AMX, x86 or ARM), so ``auto`` measures on first use: the first sweep that needs a static
(or dynamic) INT8 spec run by ``auto`` for a model, batch size and input size this machine has not measured
builds each backend of :data:`ORDER` that can run it and times it for a few seconds
(:mod:`qcore.runs.auto_probe`; ``--auto-probe off`` skips this), and stores what it measured in
``auto-backends.json`` in qcore's data directory: each backend's p50 latency per model, batch size, input
size and device (a GPU's points rank only what runs on the GPU), and the backends that failed to build, with
the reason (``bench/peers.py --record-auto`` stores there too). Where that table has numbers for the spec's mode,
backends are tried fastest first (one that failed to build when measured, last); the table is only read on the
machine (CPU, flags, torch version) it was measured on, and an unreadable one counts as none (:func:`file_problem`
names it; the next probe overwrites it).

Ranking example: measured p50 at batch 1 and 32 for resnet18, pt2e 16.3 and 419 ms, fx 19.9 and
565 ms. Each backend's latency is divided by the fastest at that point (pt2e 1.00 and 1.00, fx 1.22
and 1.35), and the backends are ranked by the geometric mean of those ratios (pt2e 1.00, fx 1.28):
``auto`` picks pt2e for a static INT8 spec it can run, fx for one it cannot (per-tensor weights).
Points for the sweep's own model and batch size are used when there are any, else the points
for its batch size, else all of them.

The choice and the reason are returned as text that goes into the Result's notes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from qcore.backends.base import BackendUnavailable
from qcore.env.paths import atomic_write_bytes, data_home
from qcore.quant.spec import QuantSpec

__all__ = ["ORDER", "MEASURED_FILE", "machine", "load_measured", "file_problem", "measured_point", "failures",
           "record_measurement", "ranking", "Choice", "choose"]

# The order ``auto`` tries backends in, per kind of spec, where nothing was measured on this machine. The
# registry (qcore.backends) also lists these first wherever it names the backends of a kind.
ORDER: dict[str, tuple[str, ...]] = {
    "float": ("float",),
    # tensorrt: CUDA only, the others CPU only; pt2e-openvino runs pt2e's graph (same ranges and codes) on OpenVINO
    "static": ("fx", "pt2e", "xnnpack", "pt2e-openvino", "tensorrt"),
    "dynamic": ("fx", "torchao"),
    "weight-only": ("weight-only", "torchao"),
}
MEASURED_FILE = "auto-backends.json"


def machine() -> dict[str, str]:
    """What a measurement is valid for: the CPU, its flags, torch (a new torch has new kernels) and how the timing
    process allocates (:mod:`qcore.env.malloc`: measurements from before it kept freed memory are measured again;
    it changed pt2e's latency more than the other backends')."""
    from qcore.backends.buildcache import environment
    from qcore.env.malloc import ALLOCATOR

    env = environment()
    return {**{k: env[k] for k in ("cpu", "machine", "cpu_flags", "torch")}, "allocator": ALLOCATOR}


def load_measured() -> list[dict]:
    """This machine's measurements (an unreadable or foreign file counts as none)."""
    path = data_home() / MEASURED_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("machine") != machine():
        return []
    return [e for e in data.get("entries", []) if isinstance(e, dict) and isinstance(e.get("p50_ms"), dict)]


def file_problem() -> str | None:
    """Why ``auto-backends.json`` holds nothing :func:`load_measured` reads here: unreadable (the error named), or
    measured on another machine or torch; None when it is readable here, or absent."""
    path = data_home() / MEASURED_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, or bytes that are not UTF-8
        return f"{MEASURED_FILE} was unreadable ({type(exc).__name__}: {str(exc)[:120]})"
    if not isinstance(data, dict) or not isinstance(data.get("entries", []), list):
        return f"{MEASURED_FILE} was unreadable (not a table of measurements)"
    if data.get("machine") != machine():
        theirs = data["machine"] if isinstance(data.get("machine"), dict) else {}
        differ = [k for k, v in machine().items() if theirs.get(k) != v]
        return f"{MEASURED_FILE} holds another machine's measurements (its {', '.join(differ)} differ)"
    return None


def _on(device: str):
    """Entries measured on ``device`` (those from before qcore recorded the device were all on the CPU)."""
    return lambda e: e.get("device", "cpu") == device


def measured_point(mode: str, model: str, batch_size: int, input_size: int, *, device: str = "cpu") -> dict | None:
    """This machine's measurement of exactly this point on ``device`` (latencies, or only failures), or None."""
    point = {"mode": mode, "model": model, "batch_size": int(batch_size), "input_size": int(input_size)}
    found = [e for e in filter(_on(device), load_measured()) if {k: e.get(k) for k in point} == point]
    return found[-1] if found else None


def failures(mode: str, model: str | None, batch_size: int | None, *, device: str = "cpu") -> dict[str, str]:
    """The backends that failed to build when ``mode`` was measured here for ``model`` at ``batch_size``, and why."""
    out: dict[str, str] = {}
    for e in filter(_on(device), load_measured()):
        failed, point = e.get("failed"), (e.get("mode"), e.get("model"), e.get("batch_size"))
        if isinstance(failed, dict) and point == (mode, model, batch_size):
            out.update({str(b): str(r) for b, r in failed.items()})
    return out


def record_measurement(
    mode: str, model: str, batch_size: int, input_size: int, p50_ms: Mapping[str, float], source: str,
    failed: Mapping[str, str] | None = None, *, device: str = "cpu",
) -> None:  # fmt: skip
    """Store (replacing an earlier one for the same point and device, and whatever was unreadable or another
    machine's) what each backend's p50 was on this machine's ``device`` (a GPU's measurements never rank the CPU's
    backends), and why any failed to build (``failed``: backend to reason)."""
    if mode not in ORDER:
        raise ValueError(f"mode={mode!r} is not allowed; allowed: {', '.join(ORDER)}")
    p50 = {b: float(v) for b, v in p50_ms.items() if v is not None and math.isfinite(v) and v > 0}
    fails = {str(b): str(r)[:300] for b, r in (failed or {}).items() if b not in p50}
    if not p50 and not fails:
        raise ValueError("no finite latency to record")
    point = {"mode": mode, "model": model, "batch_size": int(batch_size), "input_size": int(input_size)}
    entries = [e for e in load_measured() if {k: e.get(k) for k in point} != point or not _on(device)(e)]
    entries.append({**point, "device": device, "p50_ms": p50, **({"failed": fails} if fails else {}), "source": source,
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})  # fmt: skip
    body = {"machine": machine(), "entries": entries}
    atomic_write_bytes(data_home() / MEASURED_FILE, json.dumps(body, indent=1).encode())


def ranking(mode: str, model: str | None = None, batch_size: int | None = None, *, device: str = "cpu"
            ) -> tuple[list[str], str]:  # fmt: skip
    """Backends measured for ``mode`` on this machine's ``device``, fastest first, and what the ranking rests on."""
    entries = [e for e in filter(_on(device), load_measured())
               if e.get("mode") == mode and e["p50_ms"]]  # not a point where all failed
    for pick in (
        lambda e: e.get("model") == model and e.get("batch_size") == batch_size,
        lambda e: e.get("batch_size") == batch_size,
        lambda e: True,
    ):
        chosen = [e for e in entries if pick(e)]
        if chosen:
            break
    else:
        return [], ""
    logs: dict[str, list[float]] = {}
    for e in chosen:
        best = min(e["p50_ms"].values())
        for b, v in e["p50_ms"].items():
            logs.setdefault(b, []).append(math.log(v / best))
    score = {b: math.exp(sum(v) / len(v)) for b, v in logs.items()}
    order = sorted(score, key=score.get)
    where = ", ".join(f"{e['model']} batch {e['batch_size']}" for e in chosen[:4]) + (" ..." if len(chosen) > 4 else "")
    table = ", ".join(f"{b} {score[b]:.2f}x" for b in order)
    return order, f"measured on this machine ({where}; p50 over the fastest: {table}; {chosen[0].get('source', '')})"


@dataclass
class Choice:
    """The backend that runs a spec and why (empty when the spec named its backend: no choice was made)."""

    backend: object  # a registered qcore.backends.base.Backend
    why: str


def choose(
    spec: QuantSpec, device: str, registry: Mapping[str, object], *, model: str | None = None,
    batch_size: int | None = None,
) -> Choice:  # fmt: skip
    """The backend ``auto`` runs ``spec`` on, and why; raises BackendUnavailable naming every refusal.

    ``registry`` maps names to registered backends; one that does not implement the spec's kind
    (``Backend.kinds``) is never chosen, measured or not."""
    mode = spec.kind
    default = ORDER[mode]
    measured, basis = ranking(mode, model, batch_size, device=device) if mode != "float" else ([], "")
    failed = {b: r for b, r in failures(mode, model, batch_size, device=device).items() if b not in measured}
    order = [b for b in measured if b in registry] + [b for b in default if b not in measured and b not in failed]
    order += [b for b in failed if b not in order]
    reasons: dict[str, str] = {}
    for name in order:
        if name not in registry or mode not in registry[name].kinds:
            continue
        reason = registry[name].problem(spec, device)
        if reason is None:
            how = f"fastest first, {basis}" if measured else f"qcore's default order for {mode}: {', '.join(default)}"
            why = f"auto chose {name} ({how})"
            if reasons:
                why += "; " + "; ".join(f"{b} cannot: {r}" for b, r in reasons.items())
            if name in failed:
                why += f"; {name} failed to build when auto measured it here ({failed[name]})"
            return Choice(registry[name], why)
        reasons[name] = reason
    parts = list(dict.fromkeys(p for r in reasons.values() for p in r.split("; ")))  # each reason once
    raise BackendUnavailable("; ".join(parts) or f"no backend runs {spec.label()} on {device}")
