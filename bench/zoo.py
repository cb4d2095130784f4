"""The model zoo: every torchvision classifier through every quantization mode, one status per cell.

    nice -n 19 .venv/bin/python bench/zoo.py                  # all models, resumes bench/zoo.csv
    .venv/bin/python bench/zoo.py --models resnet18,swin_t    # a few (rows already in the CSV are kept)
    .venv/bin/python bench/zoo.py --redo shufflenet_v2_x0_5   # run these again, replacing their rows
    .venv/bin/python bench/zoo.py --table-only                # rewrite docs/zoo.md from the CSV

For each model of ``qcore.models.list_models()``: the smallest input side qcore accepts (the first of
32, 64, 96, ... that ``qcore.models.check_input_size`` takes, the ladder its own error message offers),
random weights (seed 0) and a 10-class head, two random calibration batches of 4 images. Each mode's
default spec goes through ``qcore.backends.quantize`` with ``backend="auto"``, as a sweep would; then the
quantized model runs a batch of 4 and a batch of 1 (a sweep's evaluation and latency calls) and must
give finite logits of the right shape. Where a static or dynamic cell is not ``ok``, the other backends
that take the spec are tried too, and the cell says what they did (a user can pick them with --backend).

Each model runs in a subprocess of its own (``--one``), one mode after the other, each row appended to
the CSV the moment it is known: a crash, an out-of-memory kill or a hang costs one cell, and a killed
run resumes where it stopped. A mode that runs past ``--timeout`` seconds is killed and recorded as a
timeout, with the phase it was in. Not a timing: random weights, random images, a busy machine are fine.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gc
import os
import re
import resource
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("static", "dynamic", "weight-only", "weight-only-int4")
SIZES = (32, 64, 96, 128, 160, 224, 299, 384, 518)  # the ladder qcore.models.check_input_size suggests from
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

# What the first runs of this zoo found broken, and how qcore now handles it (for docs/zoo.md).
FIXES = (
    "static INT8 failed on the 4 shufflenet_v2 and the 4 mnasnet models at 32 px with \"required rank 4 tensor "
    "to use channels_last format\" (at 64 px they ran): these networks end with `x.mean([2, 3])`, at 32 px over "
    "a 1x1 map, and torch's int8 `mean` refuses a channels-last 1x1 tensor. The fx backend routes each `mean` of "
    "its converted graph through `quantized_mean`, which copies such a map (N x C bytes) to NCHW first.",
    "dynamic INT8 failed on the 6 Swin models with \"linear(): argument 'weight' must be Tensor, not method\": "
    "Swin's attention runs `F.linear(x, self.qkv.weight)`, and torch.ao's dynamic Linear has `weight()` as a "
    "method. The fx backend now swaps only the Linear layers that a forward calls; the ones read instead stay "
    "FP32 (`weight-read`), and the result's notes say how many.",
    "`--backend torchao` (dynamic and weight-only INT8) failed on the 5 ViTs (\"Int8Tensor dispatch: ... "
    "aten.t\"): nn.MultiheadAttention transposes its output projection's weight itself. That projection, which "
    "torch marks `NonDynamicallyQuantizableLinear`, now stays FP32, with a note.",
)

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


# --- one model (the child process) ----------------------------------------------------------------


def _say(*parts: str) -> None:
    print("@@", *parts, flush=True)  # the parent reads these to name the phase of a timeout


def smallest_size(name: str) -> int:
    from qcore import models

    for size in SIZES:
        try:
            models.check_input_size(name, size)
            return size
        except models.ModelInputError:
            continue
    raise RuntimeError(f"{name} takes none of {SIZES}")


def spec_of(mode: str):
    from qcore.spec import QuantSpec

    if mode == "weight-only-int4":
        return QuantSpec("int4", granularity="per-group", group_size=64, mode="weight-only")
    return QuantSpec("int8", mode=mode)  # per-channel, min-max, asymmetric: the spec's defaults


def layer_census(model, example) -> dict[str, str]:
    """Each Conv/Linear of ``model`` by qualified name -> ``conv`` or ``linear`` (called as a module),
    ``mha`` (inside nn.MultiheadAttention) or ``weight-read`` (never called: its parent reads ``.weight``)."""
    import torch
    from torch import nn

    from qcore.backends import LAYER_TYPES

    called: set[str] = set()
    hooks = [m.register_forward_pre_hook(lambda mod, args, q=q: called.add(q))
             for q, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
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

    from qcore import models
    from qcore.backends import BackendUnavailable, resolve_backend

    warnings.simplefilter("ignore")
    sp = _size_params(name)
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


def alternative_tasks(rows: list[dict]) -> dict[str, list[str]]:
    """For each static or dynamic cell that is not ``ok``, ``mode@backend`` for every other torch backend
    that takes its spec, the ones without a compile first (except cells whose only reason is dynamic mode's
    FP32 convolutions: no backend has dynamic int8 convolutions)."""
    from qcore.backends import get_backend, list_backends
    from qcore.spec import SpecError

    out: dict[str, list[str]] = {}
    for r in rows:
        if r["via"] != "auto" or r["mode"] not in ("static", "dynamic") or r["status"] not in ("fails", "partial") \
                or r["reason"] == "dynamic-conv":
            continue
        for name in sorted(list_backends(), key=lambda n: n == "pt2e"):
            backend = get_backend(name)
            if name == r["backend"] or backend.own_threads:  # ORT / OpenVINO: other engines, not torch's kernels
                continue
            try:
                spec = spec_of(r["mode"]).replace(backend=name)
            except SpecError:
                continue
            if backend.unsupported(spec, "cpu") is None:
                out.setdefault(r["mode"], []).append(f"{r['mode']}@{name}")
    return out


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


def drop_rows(csv_path: Path, models: set[str]) -> None:
    rows = [r for r in read_rows(csv_path) if r["model"] not in models]
    tmp = csv_path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, csv_path)


# --- the parent ------------------------------------------------------------------------------------


def _task_of(r: dict) -> str:
    return r["mode"] if r.get("via", "auto") in ("", "auto") else f"{r['mode']}@{r['via']}"


def _last_markers(log: Path) -> tuple[str | None, str | None]:
    """The task the child announced last and is still on (None between tasks), and its phase."""
    task = phase = None
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in lines:
        if line.startswith("@@ task "):
            task, phase = line[8:].strip(), None
        elif line.startswith("@@ phase "):
            phase = line[9:].strip()
        elif line.startswith("@@ done "):
            task = phase = None
    return task, phase


def run_tasks(name: str, tasks: list[str], csv_path: Path, timeout: float, log_dir: Path) -> None:
    """Runs children until every task of ``name`` has a row; a hung or dead child costs one task."""
    while True:
        done = {_task_of(r) for r in read_rows(csv_path) if r["model"] == name}
        todo = [t for t in tasks if t not in done]
        if not todo:
            return
        log = log_dir / f"{name}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--tasks", ",".join(todo),
               "--csv", str(csv_path)]
        with open(log, "a") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        current, started, killed = None, time.monotonic(), False
        while proc.poll() is None:
            time.sleep(1.0)
            task, _ = _last_markers(log)
            if task != current:
                current, started = task, time.monotonic()
            if current and time.monotonic() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own process group: it and its compile workers
                proc.wait()
                killed = True
        task, phase = _last_markers(log)
        done = {_task_of(r) for r in read_rows(csv_path) if r["model"] == name}
        missing = [t for t in todo if t not in done]
        if not missing:
            continue
        task = task if task in missing else missing[0]
        if killed:
            reason, error = "timeout", f"killed after {timeout:.0f} s during {phase or 'start-up'}"
        elif proc.returncode and proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            reason = "oom" if sig == "SIGKILL" else "other"
            error = f"process died of {sig} during {phase or 'start-up'}" + (
                " (the kernel's out-of-memory killer sends SIGKILL)" if sig == "SIGKILL" else "")
        else:
            tail = [ln for ln in log.read_text(errors="replace").splitlines()
                    if ln.strip() and not ln.startswith("@@")][-1:]
            error = f"exit code {proc.returncode} during {phase or 'start-up'}: {' '.join(tail)[:300]}"
            reason = classify(error)
        mode, _, via = task.partition("@")
        append_row(csv_path, {"model": name, "mode": mode, "via": via or "auto", **_size_params(name),
                              "status": "fails", "reason": reason, "error": error,
                              "seconds": f"{time.monotonic() - started:.1f}",
                              "finished": dt.datetime.now().isoformat(timespec="seconds")})


def _size_params(name: str) -> dict:
    from qcore import models

    return {"size": smallest_size(name), "params_m": f"{(models.model_info(name).params or 0) / 1e6:.1f}"}


def run_alternatives(name: str, csv_path: Path, timeout: float, log_dir: Path) -> None:
    """For each static or dynamic cell of ``name`` that is not ``ok``, the other backends one at a time, until
    one leaves nothing but what no backend can do (dynamic mode's FP32 convolutions)."""
    for alts in alternative_tasks([r for r in read_rows(csv_path) if r["model"] == name]).values():
        for task in alts:
            run_tasks(name, [task], csv_path, timeout, log_dir)
            if any(_task_of(r) == task and (r["status"] == "ok" or r["reason"] == "dynamic-conv")
                   for r in read_rows(csv_path) if r["model"] == name):
                break


# --- the table -------------------------------------------------------------------------------------

HEADINGS = {"static": "static INT8", "dynamic": "dynamic INT8", "weight-only": "weight-only INT8",
            "weight-only-int4": "weight-only INT4 (g64)"}


def cell(r: dict, alts: list[dict]) -> str:
    if r["status"] in ("ok", "ok-simulated"):
        text = r["status"]
    else:
        counts = f" {r['quantized']}/{r['total']}" if r.get("quantized") not in (None, "") else ""
        text = f"{r['status']}: {r['reason']}{counts}"
        if r["status"] == "fails" and r["reason"] in ("no-int8-op", "other", "timeout", "oom"):
            text += f" ({_clean(r['error'])[:120]})"
    for a in alts:
        counts = f" {a['quantized']}/{a['total']}" if a.get("quantized") not in (None, "") else ""
        what = a["status"] if a["status"] in ("ok", "ok-simulated") else f"{a['status']}: {a['reason']}"
        text += f"; `{a['via']}`: {what}{counts}"
    return text.replace("|", "\\|")


def _clean(text: str) -> str:
    return re.sub(r"\s*\[[\w.]+:\d+\]$", "", text).replace("\n", " ")


def write_table(csv_path: Path, out: Path, note: str = "") -> None:
    import torch
    import torchvision

    from qcore import hardware, models
    from qcore.paths import atomic_write_bytes

    rows = read_rows(csv_path)
    by = {(r["model"], r["mode"]): r for r in rows if r["via"] == "auto"}
    alt: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["via"] != "auto":
            alt.setdefault((r["model"], r["mode"]), []).append(r)
    names = [n for n in models.list_models() if any((n, m) in by for m in MODES)]
    status_count = {m: Counter(by[(n, m)]["status"] for n in names if (n, m) in by) for m in MODES}
    reason_count = {m: Counter(k for n in names if (n, m) in by for k in by[(n, m)]["reason"].split("+") if k)
                    for m in MODES}
    secs = sum(float(r["seconds"] or 0) for r in rows)
    stamps = sorted(r["finished"] for r in rows if r["finished"])
    hw = hardware.detect()
    lines = [
        "# The model zoo: every classifier through every mode",
        "",
        "Made by `bench/zoo.py` (see its docstring for how to run it). Every torchvision classifier that "
        "`python -m qcore models` lists, with random weights (seed 0) and a 10-class head, at the smallest "
        "input side qcore accepts among 32, 64, 96, 128, 160, 224, ... (the ladder `check_input_size` offers), "
        f"calibrated on {CALIB_BATCHES} random batches of {CALIB_BATCH} images, then run on a batch of "
        f"{CALIB_BATCH} and a batch of 1. Each mode's default spec through `backend=auto`, as a sweep runs it:",
        "",
        "- static INT8: per-channel weights, min-max, asymmetric activations;",
        "- dynamic INT8: per-channel weights, activations quantized per batch;",
        "- weight-only INT8: per-channel; weight-only INT4: per-group(64).",
        "",
        "This is a status figure, not an accuracy or a timing (the weights are random).",
        "",
        "## What a cell says",
        "",
    ]
    lines += [f"- `{k}`: {v}" for k, v in STATUSES.items()]
    lines += ["", "`partial` and `fails` cells name a reason, and `n/m` counts the Conv/Linear layers that are "
              "int8 out of all. Where static or dynamic INT8 is not `ok`, the other torch backends that take "
              "the spec were tried too; the cell ends with what they did (pick one with `--backend`).", "",
              "### Reasons", ""]
    used = {r for m in MODES for r in reason_count[m]}
    lines += [f"- `{k}`: {v}" for k, v in REASONS.items() if k in used]
    lines += ["", "### Fixed on the way", ""] + [f"- {f}" for f in FIXES]
    lines += ["", "## Totals", "", "| | " + " | ".join(HEADINGS[m] for m in MODES) + " |",
              "|---|" + "---|" * len(MODES)]
    for s in STATUSES:
        lines.append(f"| {s} | " + " | ".join(str(status_count[m][s]) for m in MODES) + " |")
    lines.append("| **models** | " + " | ".join(str(sum(status_count[m].values())) for m in MODES) + " |")
    lines += ["", "By reason (a `partial` or `fails` cell has one; `ok-simulated` cells all have "
              "`weight-only-cpu`):", "", "| reason | " + " | ".join(HEADINGS[m] for m in MODES) + " |",
              "|---|" + "---|" * len(MODES)]
    for k in REASONS:
        if k in used:
            lines.append(f"| {k} | " + " | ".join(str(reason_count[m][k]) for m in MODES) + " |")
    lines += ["", "## Every model", "", "| model | input | params (M) | " + " | ".join(HEADINGS[m] for m in MODES)
              + " |", "|---|---|---|" + "---|" * len(MODES)]
    for n in names:
        first = next(by[(n, m)] for m in MODES if (n, m) in by)
        cells = [cell(by[(n, m)], alt.get((n, m), [])) if (n, m) in by else "not run" for m in MODES]
        lines.append(f"| {n} | {first['size'] or '?'} | {first['params_m'] or '?'} | " + " | ".join(cells) + " |")
    lines += ["", "## The run", "",
              f"{len(names)} models, {len(by)} cells and {len(rows) - len(by)} tries of other backends; "
              f"their times add up to {secs / 60:.0f} minutes"
              + (f", first cell finished {stamps[0]}, last {stamps[-1]}" if stamps else "") + ". "
              f"On {hw.summary()}; torch {torch.__version__}, torchvision {torchvision.__version__}, "
              f"quantized engine {torch.backends.quantized.engine}. " + note, ""]
    atomic_write_bytes(out, "\n".join(lines).encode())
    print(f"wrote {out}")


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=ROOT / "bench" / "zoo.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo.md")
    ap.add_argument("--models", default="", help="comma list (default: every model)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--redo", default="", help="comma list of models whose rows are dropped and run again")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one mode of one model may take")
    ap.add_argument("--alt-timeout", type=float, default=900.0,
                    help="seconds one try of another backend may take (0: no tries)")
    ap.add_argument("--table-only", action="store_true", help="only rewrite the table from the CSV")
    ap.add_argument("--note", default="", help="a sentence appended to the table's last section")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # the child: one model ...
    ap.add_argument("--tasks", default="", help=argparse.SUPPRESS)  # ... these tasks
    args = ap.parse_args()
    if args.one:
        run_one(args.one, args.tasks.split(","), args.csv)
        return
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; allowed: {', '.join(MODES)}")
    from qcore import models

    if not args.table_only:
        names = [m for m in args.models.split(",") if m] or models.list_models()
        unknown = sorted(set(names) - set(models.list_models()))
        if unknown:
            ap.error(f"unknown model(s) {unknown}; see python -m qcore models")
        if args.redo:
            drop_rows(args.csv, set(args.redo.split(",")))
        log_dir = args.csv.parent / "zoo-logs"
        log_dir.mkdir(parents=True, exist_ok=True)

        def report(i: int, name: str, t0: float) -> None:
            got = {_task_of(r): r["status"] for r in read_rows(args.csv) if r["model"] == name}
            print(f"[{i + 1}/{len(names)}] {name}: " + ", ".join(f"{t} {s}" for t, s in got.items())
                  + f" ({time.monotonic() - t0:.0f} s)", flush=True)

        for i, name in enumerate(names):  # every cell first, so that the table is whole early
            t0 = time.monotonic()
            run_tasks(name, modes, args.csv, args.timeout, log_dir)
            report(i, name, t0)
        if args.alt_timeout > 0:  # then the other backends, smallest models first
            by_size = sorted(names, key=lambda n: models.model_info(n).params or 0)
            for i, name in enumerate(by_size):
                t0 = time.monotonic()
                run_alternatives(name, args.csv, args.alt_timeout, log_dir)
                report(i, name, t0)
    write_table(args.csv, args.out, args.note)


if __name__ == "__main__":
    main()
