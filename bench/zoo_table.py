"""docs/zoo.md from bench/zoo.csv: what a cell says, the reasons, the totals, one row per model."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from zoo_cell import CALIB_BATCH, CALIB_BATCHES, MODES, REASONS, STATUSES, read_rows

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
    for a in alts:  # pt2e counts int8 weight tensors, more than the layers when attention is inside one
        counts = f" {a['quantized']}/{a['total']}" if a.get("quantized") not in (None, "") else ""
        what = a["status"] if a["status"] == "ok" else f"{a['status']}: {a['reason']}{counts}"
        if a["status"] == "fails" and a["reason"] in ("other", "timeout", "oom", "no-int8-op"):
            what += f" ({_clean(a['error'])[:100]})"
        text += f"; `--backend {a['via']}`: {what}"
    return text.replace("|", "\\|")


def _clean(text: str) -> str:
    return re.sub(r"\s*\[[\w.]+:\d+\]$", "", text).replace("\n", " ")


def write_table(csv_path: Path, out: Path, note: str = "") -> None:
    import torch
    import torchvision

    from qcore.env import hardware
    from qcore.env.paths import atomic_write_bytes
    from qcore.nets import models

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
              "int8 out of all. Where static or dynamic INT8 is not `ok`, `bench/zoo.py` then tries the other "
              "torch backends that take the spec, after every model's own cells; the cell ends with what they did "
              f"(pick one with `--backend`). This table holds {sum(map(len, alt.values()))} such tries"
              + ("" if alt else " (the run was stopped before them: `bench/zoo.py` resumes there)") + ".", "",
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
