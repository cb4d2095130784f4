"""One model of the zoo (bench/zoo.py): its cells, run in a child process, and the words a cell may use.

``run_one(name, tasks, csv)`` builds the model at its smallest accepted input with random weights, then for
each task (a mode, or ``mode@backend``) quantizes it through qcore's backends, runs it on a batch and on one
image, judges the result (:data:`STATUSES`, :data:`REASONS`) and appends one CSV row at once. Progress lines
starting with ``@@`` tell the parent which task and phase it is in.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import os
import re
import resource
import time
import traceback
import warnings
from pathlib import Path

MODES = ("static", "dynamic", "weight-only", "weight-only-int4")
SIZES = (32, 64, 96, 128, 160, 224, 299, 384, 518)  # the ladder qcore.nets.models.check_input_size suggests from
CALIB_BATCH, CALIB_BATCHES = 4, 2
COLUMNS = ("model", "mode", "via", "size", "params_m", "status", "reason", "backend", "kernel", "quantized", "total",
           "float_layers", "error", "rel_err", "seconds", "peak_rss_gb", "finished")

# What a cell can say. Written at the top of docs/zoo.md.
STATUSES = {
    "ok": "runs on native int8 kernels, and every Conv/Linear layer the mode quantizes is int8",
    "ok-simulated": "runs; the weights are stored in 8 or 4 bits but dequantized to float before each layer "
                    "(smaller, not faster: marked `simulated` in every result)",
    "partial": "runs on native int8 kernels, but some Conv/Linear layers stay FP32 (the reason says which, "
               "the counts say how many)",
    "fails": "does not run; the reason says why and what to do",
}

# Every reason a cell can give: key -> what it means and what a user can do. Few on purpose.
REASONS = {
    "dynamic-conv": "dynamic INT8 quantizes Linear layers only (torch.ao has int8 dynamic kernels for Linear, "
                    "none for convolutions), so convolutions stay FP32. Use static INT8 for a CNN.",
    "mha": "nn.MultiheadAttention's projections stay FP32: torch.ao FX has no int8 attention module, and the "
           "attention reads its input projection as a bare weight. `--backend pt2e` quantizes them (it sees "
           "the attention's matmuls after export).",
    "weight-read": "layers whose weight the model reads itself instead of calling the layer (torchvision's "
                   "Swin attention: `F.linear(x, self.qkv.weight)`) stay FP32: a quantized layer has no float "
                   "`.weight` to read.",
    "weight-only-cpu": "qcore's weight-only backend is simulated on the CPU: the weights are stored in 8 or 4 "
                       "bits and dequantized to float before each layer, as torch has no CPU kernel taking "
                       "low-bit weights and float activations for convolutions. The size is real, the speed is "
                       "not; for speed use static INT8. For a Linear-heavy model, `--backend torchao --scheme "
                       "symmetric` runs torchao's INT8 weight-only Linear kernel (convolutions stay FP32; checked "
                       "on vit_b_32).",
    "timeout": "ran past the per-mode time limit (the phase is named); on a faster or quieter machine it "
               "may finish: rerun with a larger --timeout.",
    "oom": "ran out of memory (the process was killed or an allocation failed); run it alone on a machine "
           "with more memory.",
    "fx-trace": "torch.fx cannot trace the model (Python control flow on tensor values); `--backend pt2e` "
                "(torch.export) may take it.",
    "no-int8-op": "an operator in the model has no int8 kernel in torch; the cell names it.",
    "other": "an error not classified above; the cell quotes it.",
}

# (regex on 'ExcType: message', reason); first match wins
_CLASSIFY = (
    (r"MemoryError|not enough memory|can't allocate memory|Cannot allocate memory|DefaultCPUAllocator", "oom"),
    (r"symbolically traced variables cannot be used as inputs to control flow|TraceError|Proxy object", "fx-trace"),
    (r"Could not run '[\w:.]+' with arguments from the 'QuantizedCPU' backend|"
     r"quantized::\w+.*not (implemented|supported)|NotImplementedError", "no-int8-op"),
)


def classify(error: str) -> str:
    for pattern, reason in _CLASSIFY:
        if re.search(pattern, error):
            return reason
    return "other"


def short_error(exc: BaseException) -> str:
    """``Type: first line`` plus the innermost frame outside torch's generated code, for the CSV."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "<eval_with_key>" not in f.filename]
    where = f" [{Path(frames[-1].filename).name}:{frames[-1].lineno}]" if frames else ""
    return f"{type(exc).__name__}: {first[:300]}{where}"


def _say(*parts: str) -> None:
    print("@@", *parts, flush=True)  # the parent reads these to name the phase of a timeout


def smallest_size(name: str) -> int:
    from qcore.nets import models

    for size in SIZES:
        try:
            models.check_input_size(name, size)
            return size
        except models.ModelInputError:
            continue
    raise RuntimeError(f"{name} takes none of {SIZES}")


def spec_of(mode: str):
    from qcore.quant.spec import QuantSpec

    if mode == "weight-only-int4":
        return QuantSpec("int4", granularity="per-group", group_size=64, mode="weight-only")
    return QuantSpec("int8", mode=mode)  # per-channel, min-max, asymmetric: the spec's defaults


def layer_census(model, example) -> dict[str, str]:
    """Each Conv/Linear of ``model`` by qualified name -> ``conv`` or ``linear`` (called as a module),
    ``mha`` (inside nn.MultiheadAttention) or ``weight-read`` (never called: its parent reads ``.weight``)."""
    from torch import nn

    from qcore.backends import LAYER_TYPES
    from qcore.backends.fx_int8 import called_modules

    called = set(called_modules(model, example, LAYER_TYPES))
    mha = {f"{q}.{c}" if q else c for q, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)
           for c, _ in m.named_modules() if c}
    return {q: "mha" if q in mha else ("linear" if isinstance(m, nn.Linear) else "conv") if q in called
            else "weight-read" for q, m in model.named_modules() if isinstance(m, LAYER_TYPES)}


def float_layers(qmodel) -> list[str]:
    """Qualified names of the Conv/Linear layers left in FP32 in a quantized eager or FX model (torch.ao swaps
    a quantized layer for a module of its own; torchao keeps the layer and swaps its weight)."""
    from torch import nn

    if not hasattr(qmodel, "named_modules"):
        return []
    out = []
    for q, m in qmodel.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and \
                not type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) \
                and not type(getattr(m, "weight", None)).__module__.startswith("torchao"):
            out.append(q)
    return out


def _forward_check(q, batch, example) -> float:
    """Runs the quantized model as a sweep would (a batch, then batch 1); the relative error of its logits
    on the batch against FP32's is returned for the record (random weights: not an accuracy figure)."""
    import torch

    with torch.inference_mode():
        out = q(batch)
        one = q(example)
    for t, n in ((out, batch.shape[0]), (one, 1)):
        if tuple(t.shape) != (n, 10):
            raise RuntimeError(f"logits of shape {tuple(t.shape)}, expected ({n}, 10)")
        if not torch.isfinite(t).all():
            raise RuntimeError("non-finite logits")
    return out.float()


def try_backend(backend, model, spec, calib, example, batch, ref):
    """Quantize and run; returns (Quantized, relative error of the batch's logits against FP32's)."""
    _say("phase", f"quantize [{backend.name}]")
    q = backend.quantize(model, spec, calib, example, "cpu")
    _say("phase", f"forward [{backend.name}]")
    out = _forward_check(q, batch, example)
    rel = float((out - ref).norm() / ref.norm().clamp(min=1e-30))
    return q, rel


def judge(mode: str, q, census: dict[str, str]) -> tuple[str, str, list[str]]:
    """(status, reason keys joined by '+', float layers left) of a quantized model that ran."""
    left = [n for n in float_layers(q.model) if n in census]  # FX renames what it fused: those are int8
    if not left and q.quantized_layers < q.total_layers:
        # FX keeps a layer it never calls only as a holder of its weight (no longer a Linear): the layers
        # read rather than called are the ones left when their number is the shortfall
        unused = [n for n, r in census.items() if r in ("mha", "weight-read")]
        left = unused if len(unused) == q.total_layers - q.quantized_layers else []
    if mode.startswith("weight-only") and q.kernel == "simulated" and q.quantized_layers >= q.total_layers:
        return "ok-simulated", "weight-only-cpu", left
    if q.kernel == "native" and q.quantized_layers >= q.total_layers:
        return "ok", "", []
    role = {"conv": "dynamic-conv" if mode == "dynamic" else "other", "linear": "other", "mha": "mha",
            "weight-read": "weight-read"}
    reasons = list(dict.fromkeys(sorted((role[census[n]] for n in left), key=list(REASONS).index)))
    status = "ok-simulated" if mode.startswith("weight-only") else "partial"
    return status, "+".join(reasons) or "other", left


def run_one(name: str, tasks: list[str], csv_path: Path) -> None:
    """Each task is a mode (``static``: backend auto) or ``mode@backend``; one CSV row each."""
    import torch

    from qcore.backends import BackendUnavailable, resolve_backend
    from qcore.nets import models

    warnings.simplefilter("ignore")
    sp = size_params(name)
    size = sp["size"]
    _say("phase", f"build at {size}px")
    torch.manual_seed(0)
    model = models.build_model(name, 10, size).eval()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(CALIB_BATCH, 3, size, size, generator=g) for _ in range(CALIB_BATCHES)]
    example = torch.randn(1, 3, size, size, generator=g)
    batch = torch.randn(CALIB_BATCH, 3, size, size, generator=g)
    with torch.no_grad():
        ref = model(batch).float()
    census = layer_census(model, example)
    for task in tasks:
        _say("task", task)
        mode, _, via = task.partition("@")
        spec = spec_of(mode).replace(backend=via or "auto")
        row = {"model": name, "mode": mode, "via": via or "auto", **sp}
        start = time.perf_counter()
        try:
            backend = resolve_backend(spec, "cpu")
        except BackendUnavailable as exc:
            backend = None
            row.update(status="fails", reason="other", error=f"no backend: {exc}")
        if backend is not None:
            row["backend"] = backend.name
            try:
                q, rel = try_backend(backend, model, spec, calib, example, batch, ref)
                status, reason, left = judge(mode, q, census)
                row.update(status=status, reason=reason, kernel=q.kernel, quantized=q.quantized_layers,
                           total=q.total_layers, float_layers=" ".join(left[:6]) + (" ..." if len(left) > 6 else ""),
                           rel_err=f"{rel:.3g}")
                del q
            except Exception as exc:  # the cell records it; the other tasks go on
                err = short_error(exc)
                row.update(status="fails", reason=classify(err), error=err)
            gc.collect()
        row["seconds"] = f"{time.perf_counter() - start:.1f}"
        row["peak_rss_gb"] = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f}"  # so far, KiB
        row["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        append_row(csv_path, row)
        _say("done", task, row["status"])


def size_params(name: str) -> dict:
    from qcore.nets import models

    return {"size": smallest_size(name), "params_m": f"{(models.model_info(name).params or 0) / 1e6:.1f}"}


# --- the CSV ---------------------------------------------------------------------------------------


def read_rows(csv_path: Path) -> list[dict]:
    if not csv_path.exists():
        return []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def append_row(csv_path: Path, row: dict) -> None:
    new = not csv_path.exists() or csv_path.stat().st_size == 0
    with open(csv_path, "a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in COLUMNS})
        fh.flush()
        os.fsync(fh.fileno())
