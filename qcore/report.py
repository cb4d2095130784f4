"""Export results: CSV, JSON and a self-contained HTML report (charts and manifest inline).

Files are written atomically (a temporary file, then a rename): a crash never leaves half a
report. Plotly is imported only inside :func:`html_report`, so ``import qcore`` stays lean.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

from .paths import atomic_write_bytes
from .result import COLUMNS, Result, baseline_of

__all__ = ["DASH", "fmt", "text_table", "csv_text", "json_text", "write_csv", "write_json", "pareto_figure",
           "build_text", "html_report", "write_html"]

DASH = "–"  # what a number that was not measured (None) is shown as, in the CLI, the app and the reports


def fmt(value, spec: str = "", suffix: str = "") -> str:
    """``value`` formatted by ``spec`` with its unit ``suffix``, or :data:`DASH` when it was not measured.

    >>> fmt(2.345, ".2f", " ms"), fmt(None, ".2f", " ms")
    ('2.35 ms', '–')
    """
    return DASH if value is None else format(value, spec) + suffix


def text_table(results: Sequence[Result]) -> str:
    """The results as a fixed-width text table (the CLI prints it after a sweep and for ``runs``)."""
    cols = [("label", 44), ("backend", 11), ("kernel", 9), ("top1", 6), ("Δtop1", 6), ("agree", 6),
            ("p50 ms", 8), ("speedup", 7), ("size", 6), ("pareto", 6), ("status", 8)]  # fmt: skip
    lines = ["  ".join(f"{name:>{w}}" if i else f"{name:<{w}}" for i, (name, w) in enumerate(cols))]
    for r in results:
        vals = [r.label[:44], r.backend or DASH, r.kernel or DASH, fmt(r.top1, ".2f"), fmt(r.top1_delta, "+.2f"),
                fmt(r.agreement, ".1f"), fmt(r.latency_ms_p50, ".2f"), fmt(r.speedup, ".2f"),
                fmt(r.size_ratio, ".3f"), "*" if r.pareto else "", r.status]  # fmt: skip
        lines.append("  ".join(f"{v:>{w}}" if i else f"{v:<{w}}" for i, (v, (_, w)) in enumerate(zip(vals, cols))))
    return "\n".join(lines)


def _fmt(v) -> str | float | int:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return round(v, 6)
    return v


def csv_text(results: Sequence[Result]) -> str:
    """The results as CSV, one row per result, the columns of :data:`qcore.result.COLUMNS`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow({k: _fmt(v) for k, v in r.row().items()})
    return buf.getvalue()


def json_text(results: Sequence[Result]) -> str:
    """Every field of every result (spec, samples, manifest), as JSON that :meth:`Result.from_dict` reads."""
    return json.dumps([r.to_dict() for r in results], indent=1)


def write_csv(results: Sequence[Result], path: Path | str) -> None:
    """:func:`csv_text` to ``path``, atomically."""
    atomic_write_bytes(Path(path), csv_text(results).encode())


def write_json(results: Sequence[Result], path: Path | str) -> None:
    """:func:`json_text` to ``path``, atomically."""
    atomic_write_bytes(Path(path), json_text(results).encode())


def pareto_figure(results: Sequence[Result], x: str = "latency_ms_p50"):
    """Plotly figure: top-1 against latency (or size), marker size by size, colour by precision,
    the 2-D frontier as a step line. Only ok rows are plotted."""
    import plotly.graph_objects as go

    from .pareto import frontier_2d

    ok = [r for r in results if r.ok and r.top1 is not None and getattr(r, x) is not None]
    fig = go.Figure()
    max_size = max((r.size_bytes or 1) for r in ok) if ok else 1
    for precision in sorted({r.spec.precision for r in ok}):
        rows = [r for r in ok if r.spec.precision == precision]
        fig.add_trace(go.Scatter(
            x=[getattr(r, x) for r in rows], y=[r.top1 for r in rows], mode="markers", name=precision.upper(),
            marker=dict(size=[10 + 30 * (r.size_bytes or 0) / max_size for r in rows], line=dict(width=1)),
            customdata=[[r.run_id] for r in rows],
            text=[_hover_text(r) for r in rows], hovertemplate="%{text}<extra></extra>",
        ))  # fmt: skip
    pts = [(getattr(r, x), r.top1) for r in ok]
    front = [ok[i] for i in frontier_2d(pts)]
    if front:
        fig.add_trace(go.Scatter(
            x=[getattr(r, x) for r in front], y=[r.top1 for r in front], mode="lines", name="frontier",
            line=dict(shape="hv", dash="dot", color="gray"), hoverinfo="skip",
        ))  # fmt: skip
    xlabel = {"latency_ms_p50": "latency p50 (ms, lower is better)", "size_bytes": "size (bytes, lower is better)"}
    fig.update_layout(
        xaxis_title=xlabel.get(x, x), yaxis_title="top-1 accuracy (%)", legend_title="precision",
        margin=dict(l=40, r=20, t=30, b=40), height=480,
    )  # fmt: skip
    if x == "size_bytes":
        fig.update_xaxes(type="log")
    return fig


def _hover_text(r: Result) -> str:
    """What the chart shows when a point is hovered: the spec, the kernel and the numbers with their units."""
    s = r.spec
    lines = [
        f"<b>{html.escape(r.label)}</b>",
        f"backend {r.backend}, kernel {r.kernel}, device {r.device}",
        f"top-1 {r.top1:.2f}% ({r.top1_delta:+.2f} pts), agreement {r.agreement:.1f}%",
        f"latency p50 {r.latency_ms_p50:.2f} ms, speed-up {r.speedup:.2f}x vs FP32 eager",
        f"size {r.size_bytes / 1e6:.2f} MB ({r.size_ratio:.3f}x)",
    ]
    if r.build_seconds is not None:
        lines.append(build_text(r))
    if not s.is_float:
        lines.append(f"{s.granularity} {s.calibration} {s.scheme} {s.mode}")
    return "<br>".join(lines)


def build_text(r: Result) -> str:
    """What compiling cost, this time and the first: ``build 0.4 s (from the build cache; first build 48.0 s)``."""
    first = r.first_build_seconds
    if first is None or first == r.build_seconds:  # equal only when everything was built in this run
        return f"build {r.build_seconds:.1f} s (built now, cached for the next run)"
    return f"build {r.build_seconds:.1f} s (from the build cache; first build {first:.1f} s)"


def html_report(results: Sequence[Result], title: str = "qcore report") -> str:
    """One self-contained HTML page: both charts (plotly.js inline), the table, the manifest."""
    import plotly.io as pio

    figs = [pareto_figure(results, "latency_ms_p50"), pareto_figure(results, "size_bytes")]
    charts = [pio.to_html(f, full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    cols = [
        "label",
        "model",
        "dataset",
        "backend",
        "kernel",
        "top1",
        "top1_delta",
        "agreement",
        "latency_ms_p50",
        "speedup",
        "speedup_vs_best_fp32",
        "size_bytes",
        "size_ratio",
        "build_seconds",
        "pareto",
        "status",
        "error",
        "baseline_run_id",
    ]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in results:
        row = r.row()
        body.append("<tr>" + "".join(f"<td>{html.escape(str(_fmt(row[c])))}</td>" for c in cols) + "</tr>")
    rows, refs = list(results), {}
    for r in rows:
        if (base := baseline_of(rows, r)) is not None:
            refs[base.run_id] = base
    ref_html = "".join(
        f"<li>sweep {html.escape(b.sweep_id or DASH)}: FP32 run <code>{html.escape(b.run_id)}</code>, top-1 "
        f"{fmt(b.top1, '.2f', '%')}, latency p50 {fmt(b.latency_ms_p50, '.2f', ' ms')}, {fmt(b.size_bytes, ',')} "
        f"bytes, weights {html.escape(b.weights or DASH)}</li>" for b in refs.values())
    manifests = {}
    for r in results:
        manifests.setdefault(json.dumps(r.manifest, sort_keys=True), r.manifest)
    manifest_html = "".join(f"<pre>{html.escape(json.dumps(m, indent=1))}</pre>" for m in manifests.values())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #999;padding:3px 6px;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(results)} results. Speed-ups are relative to FP32 eager measured interleaved in the same process;
<code>speedup_vs_best_fp32</code> is relative to the fastest FP32 way measured. Units: accuracy in %,
latency in ms, size in bytes. Each row names the FP32 run it was measured against
(<code>baseline_run_id</code>):</p><ul>{ref_html or "<li>none among these rows</li>"}</ul>
<h2>Accuracy against latency</h2>{charts[0]}
<h2>Accuracy against size</h2>{charts[1]}
<h2>Results</h2><table><tr>{head}</tr>{"".join(body)}</table>
<h2>Manifest</h2>{manifest_html}
</body></html>"""


def write_html(results: Sequence[Result], path: Path | str, title: str = "qcore report") -> None:
    """:func:`html_report` to ``path``, atomically."""
    atomic_write_bytes(Path(path), html_report(results, title).encode())
