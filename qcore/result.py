"""Result: one measured spec, a record of fixed shape that knows its FP32 reference.

Units: top1, top5 and agreement in percent (0-100); top1_delta in percentage points;
latencies in milliseconds; sizes in bytes; seconds for calibration, quantization and building.

Every row of a sweep carries ``baseline_run_id``, the run id of the torch FP32 row its deltas,
agreement and speed-up were measured against (as torchvision's quantized weights name their
``meta["unquantized"]`` weights); :func:`baseline_of` finds that row among stored ones.

``build_seconds`` is what compiling or lowering cost in this run (an AOTInductor package, an
ExecuTorch program; for the FP32 row, the compiled FP32 reference): the build itself the first
time, loading it from the build cache after that. ``first_build_seconds`` is what building it
from scratch cost, now or when it was cached. Both are empty where nothing is compiled (eager
torch.ao, ONNX Runtime sessions).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .spec import QuantSpec

__all__ = ["COLUMNS", "STATUSES", "Result", "baseline_of", "manifest"]

# The CSV columns, in order. Everything a row needs to be read on its own.
COLUMNS = (
    "model", "dataset", "weights", "precision", "granularity", "group_size", "calibration", "percentile",
    "scheme", "mode", "backend", "device", "kernel", "engine", "batch_size", "input_shape", "threads",
    "top1", "top5", "top1_delta", "agreement", "logit_kl",
    "latency_ms_p50", "latency_ms_p90", "fp32_latency_ms_p50", "speedup", "best_fp32", "speedup_vs_best_fp32",
    "size_bytes", "size_ratio", "calib_seconds", "quantize_seconds", "quantized_layers", "total_layers",
    "pareto", "status", "error", "notes", "label", "run_id", "sweep_id", "created_at", "baseline_run_id",
    "build_seconds", "first_build_seconds",
)  # fmt: skip

STATUSES = ("ok", "error", "skipped", "cancelled")


@dataclass
class Result:
    spec: QuantSpec
    model: str
    dataset: str
    weights: str = ""
    backend: str = ""
    device: str = "cpu"
    kernel: str = ""
    engine: str = ""
    batch_size: int = 1
    input_shape: str = ""
    threads: int = 1
    top1: float | None = None
    top5: float | None = None
    top1_delta: float | None = None
    agreement: float | None = None
    logit_kl: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    fp32_latency_ms_p50: float | None = None
    speedup: float | None = None
    best_fp32: str = "fp32 eager"
    speedup_vs_best_fp32: float | None = None
    size_bytes: int | None = None
    size_ratio: float | None = None
    calib_seconds: float | None = None
    quantize_seconds: float | None = None
    build_seconds: float | None = None
    first_build_seconds: float | None = None
    quantized_layers: int | None = None
    total_layers: int | None = None
    pareto: bool = False
    status: str = "ok"
    error: str = ""
    notes: list[str] = field(default_factory=list)
    latency_samples_ms: list[float] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    sweep_id: str = ""
    created_at: float = field(default_factory=time.time)
    baseline_run_id: str = ""  # the FP32 row measured against; "" in rows stored before the field existed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return self.spec.label()

    def row(self) -> dict[str, Any]:
        """The flat CSV row (see COLUMNS)."""
        d = self.spec.to_dict()  # backend and device: the ones that ran (below) win over "auto"
        d.update(
            {k: v for k, v in dataclasses.asdict(self).items() if k not in ("spec", "manifest", "latency_samples_ms")}
        )
        d["notes"] = " | ".join(self.notes)
        d["label"] = self.label
        return {k: d.get(k) for k in COLUMNS}

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (round-trips through :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        d = dict(d)
        d["spec"] = QuantSpec.from_dict(d["spec"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def baseline_of(results: list[Result], of: Result | None = None) -> Result | None:
    """The torch FP32 row that ``of`` (default: the rows of ``results``) was measured against, if among them.

    The row whose ``run_id`` is the ``baseline_run_id`` the rows carry. Rows stored before that field
    existed fall back to the first ok row whose spec :attr:`~qcore.spec.QuantSpec.is_reference` (of the same
    sweep as ``of``), so an FP32 row run on ONNX Runtime or OpenVINO is never taken for the baseline.
    """
    by_id = {r.run_id: r for r in results}
    wanted = [of] if of is not None else results
    ids = [r.baseline_run_id for r in wanted if r.baseline_run_id]
    if ids:
        return next((by_id[i] for i in ids if i in by_id), None)
    sweep = of.sweep_id if of is not None else None
    return next((r for r in results if r.ok and r.spec.is_reference and sweep in (None, r.sweep_id)), None)


def manifest(**extra: Any) -> dict[str, Any]:
    """Versions, hardware and threads: what a reader needs to trust (or reproduce) a number."""
    import torch
    import torchvision

    from . import __version__, hardware

    hw = hardware.detect()
    m = {
        "qcore": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": hw.cpu,
        "cpu_flags": list(hw.flags),
        "gpu": hw.gpu,
        "threads": torch.get_num_threads(),
        "quantized_engine": hardware.quantized_engine(),
        "platform": platform.platform(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    m.update(extra)
    return m
