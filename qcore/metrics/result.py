"""Result: one measured spec, a record of fixed shape that knows its FP32 reference.

Units: top1, top5, agreement, ptq_top1 and control_top1 in percent (0-100); top1_delta in percentage points
(with ``calib_draws`` > 1, means over the draws, their spread in ``top1_std``/``top1_min``/``top1_max``, and
images_lost/images_gained the mean counts per draw, the intervals Rubin's combination: :mod:`qcore.metrics.draws`);
recovered a fraction (1.0: QAT matched the fine-tuned FP32 control);
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

from qcore.metrics.columns import parse_time
from qcore.quant.spec import QuantSpec
from qcore.quant.spec_ptq import PTQ_FIELDS

__all__ = ["SCALE_COLUMNS", "COLUMNS", "TIME_FIELDS", "STATUSES", "Result", "baseline_of", "manifest"]

# What gives the numbers their scale (qcore.metrics.scale): the latency's calls, spread, interval and load, the busy
# flag, and the accuracy's images and intervals. Appended after the columns of before.
SCALE_COLUMNS = (
    "timed_calls", "latency_spread", "latency_ms_lo", "latency_ms_hi", "load_avg", "busy",
    "eval_images", "top1_lo", "top1_hi", "images_lost", "images_gained", "top1_delta_lo", "top1_delta_hi",
)  # fmt: skip

# The CSV columns, in order (new ones appended). Everything a row needs to be read on its own; what each means,
# its unit and how a cell is written: qcore.metrics.columns.KEY (docs/columns.md).
COLUMNS = (
    "model", "dataset", "weights", "precision", "granularity", "group_size", "calibration", "percentile",
    "scheme", "mode", "backend", "device", "kernel", "engine", "batch_size", "input_shape", "threads",
    "top1", "top5", "top1_delta", "agreement", "logit_kl",
    "latency_ms_p50", "latency_ms_p90", "fp32_latency_ms_p50", "speedup", "best_fp32", "speedup_vs_best_fp32",
    "size_bytes", "size_ratio", "calib_seconds", "quantize_seconds", "quantized_layers", "total_layers",
    "pareto", "status", "error", "notes", "label", "run_id", "sweep_id", "created_at", "baseline_run_id",
    "build_seconds", "first_build_seconds",
    *SCALE_COLUMNS,
    "node_id", "host", "cpu_model", "retries", "accuracy_host", "timed_from", "timed_to",
    "keep_float",
    "ptq_top1", "control_top1", "recovered", "finetune_seconds", "qat_epochs",
    "calib_draws", "top1_std", "top1_min", "top1_max", "calib_seeds",
    "keep_int8",
    "qat_images_won", "qat_images_lost", "qat_vs_ptq_lo", "qat_vs_ptq_hi", "retime_of",
    "draws_top1",
    "equalize", "bias_correction", "rounding", "adaround_iters", "adaround_images", "ptq_algorithm_seconds",
)  # fmt: skip
# Fields holding seconds since the epoch; the CSV and JSON write them as ISO 8601 UTC (qcore.metrics.columns), which
# from_dict reads back as well as the numbers older files and databases hold.
TIME_FIELDS = ("created_at", "timed_from", "timed_to")

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
    # the scale of the numbers (qcore.metrics.scale); None in rows stored before these fields existed
    timed_calls: int | None = None
    latency_spread: float | None = None  # p90 / p50
    latency_ms_lo: float | None = None  # 95% interval of the median latency
    latency_ms_hi: float | None = None
    load_avg: float | None = None  # 1-minute load average around the timing
    busy: str = ""  # why the timing is not to be trusted ("" when nothing says so)
    eval_images: int | None = None
    top1_lo: float | None = None  # 95% Wilson interval of top-1, percent
    top1_hi: float | None = None
    images_lost: float | None = None  # images FP32 got right and this row wrong (with draws: the mean per draw)
    images_gained: float | None = None  # images this row got right and FP32 wrong (with draws: the mean per draw)
    top1_delta_lo: float | None = None  # 95% paired interval of the top-1 change, points
    top1_delta_hi: float | None = None
    # Where the latency was measured (a Ray node id on a cluster, "" on the local worker), its host and CPU;
    # ``threads`` above is the torch thread count it was timed with. Rows stored before these existed read
    # them as their defaults (the JSON body is the row, so old databases open unchanged).
    node_id: str = ""
    host: str = ""
    cpu_model: str = ""
    retries: int = 0  # times a lost node's task was submitted again before this row was measured
    accuracy_host: str = ""  # where calibration, quantization and evaluation ran (a cluster may split them)
    timed_from: float | None = None  # wall-clock start and end of the timed block (seconds since the epoch)
    timed_to: float | None = None
    # mode="qat" rows (qcore.qat.measure): top-1 of the PTQ counterpart and of the FP32 model fine-tuned the
    # same way, recovered = (top1 - ptq_top1) / (control_top1 - ptq_top1), the QAT fine-tune's seconds, and the
    # curve {"qat": {...}, "control": {...}} of both fine-tunes (step, epoch, train_loss, top1 lists)
    ptq_top1: float | None = None
    control_top1: float | None = None
    recovered: float | None = None
    # QAT - PTQ on the same eval_images, paired: images QAT got right and PTQ wrong (won) and the other way (lost),
    # and the 95% interval of top1 - ptq_top1 in points (qcore.metrics.stats.paired_delta); None in rows of before
    qat_images_won: int | None = None
    qat_images_lost: int | None = None
    qat_vs_ptq_lo: float | None = None
    qat_vs_ptq_hi: float | None = None
    # a row of Time again (qcore.service.retime): the run it times again; its accuracy, size and QAT figures are
    # that row's
    retime_of: str = ""
    finetune_seconds: float | None = None
    # seconds the post-training algorithms took before the backend quantized (qcore.ptq: CLE, bias correction,
    # AdaRound); None for a spec that asks for none
    ptq_algorithm_seconds: float | None = None
    qat_curve: dict[str, Any] = field(default_factory=dict)
    # calibration draws (qcore.metrics.draws): top1, top5, top1_delta, agreement and logit_kl above are their means
    calib_draws: int = 1
    top1_std: float | None = None  # sample std of top-1 over the draws (None: one draw)
    top1_min: float | None = None
    top1_max: float | None = None
    calib_seeds: list[int] = field(default_factory=list)  # draw k calibrated on images seeded calib_seeds[k]
    draws_top1: list[float] = field(default_factory=list)  # each draw's top-1, percent
    # each draw's images lost and gained against FP32; empty for one draw, and in draw rows stored before these
    # existed, whose images_lost/images_gained and intervals are draw 0's (qcore.metrics.scale.draw0_label says so)
    draws_lost: list[int] = field(default_factory=list)
    draws_gained: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return self.spec.label()

    def row(self) -> dict[str, Any]:
        """The flat CSV row (see COLUMNS): the values as stored, ``calib_seeds`` and ``draws_top1`` as lists
        (:func:`qcore.metrics.columns.cell` writes each cell)."""
        d = self.spec.to_dict()  # backend and device: the ones that ran (below) win over "auto"
        d.update(
            {k: v for k, v in dataclasses.asdict(self).items()
             if k not in ("spec", "manifest", "latency_samples_ms", "qat_curve")}
        )
        d["notes"] = " | ".join(self.notes)
        d["label"] = self.label
        d["keep_float"] = ";".join(self.spec.keep_float)  # module names hold no ";" (torchvision: dots, digits)
        d["keep_int8"] = ";".join(self.spec.keep_int8)  # INT4 weight-only layers stored in INT8 instead
        d.update({k: getattr(self.spec, k) for k in PTQ_FIELDS})  # also where to_dict leaves them out (none asked)
        if self.spec.rounding != "adaround":  # AdaRound's numbers mean nothing without it
            d["adaround_iters"] = d["adaround_images"] = None
        if self.spec.is_float:  # nor do the algorithms on a float cast
            d.update(dict.fromkeys(PTQ_FIELDS))
        return {k: d.get(k) for k in COLUMNS}

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (round-trips through :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        d = dict(d)
        # an exported JSON writes a setting that does not apply as null: the spec's default (then normalised)
        d["spec"] = QuantSpec.from_dict({k: v for k, v in d["spec"].items() if v is not None})
        for name in TIME_FIELDS:  # ISO 8601 (an exported JSON) or seconds since the epoch (the store)
            if isinstance(d.get(name), str):
                d[name] = parse_time(d[name])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def baseline_of(results: list[Result], of: Result | None = None) -> Result | None:
    """The torch FP32 row that ``of`` (default: the rows of ``results``) was measured against, if among them.

    The row whose ``run_id`` is the ``baseline_run_id`` the rows carry. Rows stored before that field
    existed fall back to the first ok row whose spec :attr:`~qcore.quant.spec.QuantSpec.is_reference` (of the same
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

    from qcore import __version__
    from qcore.env import hardware

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
    if hw.gpu:  # its capability, memory, driver and clocks (a GPU figure depends on all of them)
        from qcore.env.gpu import manifest as gpu_manifest

        m["gpu_detail"] = gpu_manifest()
    m.update(extra)
    return m
