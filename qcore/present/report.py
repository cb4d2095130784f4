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

from qcore.env.paths import atomic_write_bytes
from qcore.metrics.columns import NA_VALUES, NAMES, applies, cell, column, help_text
from qcore.metrics.result import COLUMNS, TIME_FIELDS, Result, baseline_of
from qcore.metrics.scale import draw0_label
from qcore.present.chart_scale import scale_lines
from qcore.present.csv_load import read_csv
from qcore.quant.spec import QAT_DEFAULTS

__all__ = ["DASH", "fmt", "text_table", "csv_text", "json_record", "json_text", "read_csv", "write_csv",
           "write_json", "pareto_figure", "build_text", "html_report", "key_html", "write_html", "PRECISION_COLORS",
           "REPORT_COLUMNS", "report_cell", "report_subtitle"]

# One colour per precision, in the app and the reports alike; distinct in both themes; FP32, the reference, grey.
PRECISION_COLORS = {"FP32": "#8c8c8c", "FP16": "#1f77b4", "BF16": "#17becf", "INT8": "#d62728", "INT4": "#ff7f0e"}
DASH = "–"  # what a number that was not measured (None) is shown as, in the CLI, the app and the reports


def fmt(value, spec: str = "", suffix: str = "") -> str:
    """``value`` formatted by ``spec`` with its unit ``suffix``, or :data:`DASH` when it was not measured.

    >>> fmt(2.345, ".2f", " ms"), fmt(None, ".2f", " ms")
    ('2.35 ms', '–')
    """
    return DASH if value is None else format(value, spec) + suffix


def text_table(results: Sequence[Result]) -> str:
    """The results as a fixed-width text table (the CLI prints it after a sweep and for ``runs``): ``fp32 ms`` is
    the FP32 p50 timed in turns with the row (the speed-up's divisor), ``busy`` a ``!`` when the machine was
    busy while it was timed (:func:`qcore.metrics.scale.busy_reason`)."""
    width = min(max([44, *(len(r.label) for r in results)]), 100)  # whole labels ("+cle", "+cle +bc" differ at the end)
    cols = [("label", width), ("backend", 11), ("kernel", 9), ("top1", 6), ("Δtop1", 6), ("agree", 6),
            ("p50 ms", 8), ("fp32 ms", 8), ("p90/50", 6), ("speedup", 7), ("size", 6), ("pareto", 6), ("busy", 4),
            ("status", 8)]  # fmt: skip
    lines = ["  ".join(f"{name:>{w}}" if i else f"{name:<{w}}" for i, (name, w) in enumerate(cols))]
    for r in results:
        vals = [r.label[:width], r.backend or DASH, r.kernel or DASH, fmt(r.top1, ".2f"), fmt(r.top1_delta, "+.2f"),
                fmt(r.agreement, ".1f"), fmt(r.latency_ms_p50, ".2f"), fmt(r.fp32_latency_ms_p50, ".2f"),
                fmt(r.latency_spread, ".2f"), fmt(r.speedup, ".2f"), fmt(r.size_ratio, ".3f"),
                "*" if r.pareto else "", "!" if r.busy else "", r.status]  # fmt: skip
        lines.append("  ".join(f"{v:>{w}}" if i else f"{v:<{w}}" for i, (v, (_, w)) in enumerate(zip(vals, cols))))
    return "\n".join(lines)


def csv_text(results: Sequence[Result]) -> str:
    """The results as CSV, one row per result, every column of :data:`qcore.metrics.result.COLUMNS` in every file (a
    column
    empty for all these rows stays: files of different sweeps and versions line up). Each cell is written by the
    column key (:func:`qcore.metrics.columns.cell`): times ISO 8601 UTC, lists ``;``-separated, a setting that does not
    apply empty; :func:`qcore.present.csv_load.read_csv` reads it back."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in results:
        row = r.row()
        w.writerow({k: cell(k, v, row) for k, v in row.items()})
    return buf.getvalue()


def json_record(r: Result) -> dict:
    """One result for the JSON export: every field (:meth:`Result.to_dict`), those of the column key written as the
    CSV writes them (times ISO 8601 UTC; a setting that does not apply, the spec's included, null; lists as lists).
    :meth:`Result.from_dict` reads it back."""
    d, row = r.to_dict(), r.row()
    for name in TIME_FIELDS:
        d[name] = cell(name, d[name], row) or None
    for where in (d, d["spec"]):
        for name in [k for k in where if k in NAMES and not applies(k, row)]:
            where[name] = None if where[name] in NA_VALUES else where[name]
    if r.spec.mode != "qat":  # the fine-tune's settings beside qat_epochs (not CSV columns)
        d["spec"].update({k: None for k in QAT_DEFAULTS})
    return d


def json_text(results: Sequence[Result]) -> str:
    """Every field of every result (spec, samples, manifest), as JSON (:func:`json_record` each)."""
    return json.dumps([json_record(r) for r in results], indent=1)


def write_csv(results: Sequence[Result], path: Path | str) -> None:
    """:func:`csv_text` to ``path``, atomically."""
    atomic_write_bytes(Path(path), csv_text(results).encode())


def write_json(results: Sequence[Result], path: Path | str) -> None:
    """:func:`json_text` to ``path``, atomically."""
    atomic_write_bytes(Path(path), json_text(results).encode())


def pareto_figure(results: Sequence[Result], x: str = "latency_ms_p50"):
    """Plotly figure: top-1 against latency (or size), marker size by size, colour by precision,
    the 2-D frontier as a step line. Only ok rows are plotted. Every x comes from
    :func:`qcore.present.chart_x.positions`
    (latency: the FP32 row's p50 over the row's speed-up; size: MB)."""
    import plotly.graph_objects as go

    from qcore.metrics.pareto import frontier_2d
    from qcore.present.chart_scale import decorate
    from qcore.present.chart_x import positions

    ok = [r for r in results if r.ok and r.top1 is not None and getattr(r, x) is not None]
    pos = positions(ok, x)
    at = {i: p.x for i, p in pos.items()}
    fig = go.Figure()
    max_size = max((r.size_bytes or 1) for r in ok) if ok else 1
    for precision in sorted({r.spec.precision for r in ok if r.spec.mode != "qat"}):
        # quiet rows first: the legend draws its symbol like the trace's first point, never a faded busy one
        rows = sorted((r for r in ok if r.spec.precision == precision and r.spec.mode != "qat"),
                      key=lambda r: bool(r.busy))
        fig.add_trace(go.Scatter(
            x=[at[r.run_id] for r in rows], y=[r.top1 for r in rows], mode="markers", name=precision.upper(),
            marker=dict(size=[10 + 30 * (r.size_bytes or 0) / max_size for r in rows], line=dict(width=1),
                        color=PRECISION_COLORS.get(precision.upper(), "#1f77b4")),
            customdata=[[r.run_id] for r in rows],
            text=[_hover_text(r) for r in rows], hovertemplate="%{text}<extra></extra>",
        ))  # fmt: skip
    from qcore.qat.charts import add_qat_points  # QAT rows: a marker of their own

    add_qat_points(fig, [r for r in ok if r.spec.mode == "qat"], x, max_size, _hover_text)
    pts = [(at[r.run_id], r.top1) for r in ok]
    front = [ok[i] for i in frontier_2d(pts)]
    if front:
        fig.add_trace(go.Scatter(
            x=[at[r.run_id] for r in front], y=[r.top1 for r in front], mode="lines", name="frontier",
            line=dict(shape="hv", dash="dot", color="gray"), hoverinfo="skip",
        ))  # fmt: skip
    fig.update_layout(yaxis_title="top-1 accuracy (%, 95% interval)", **CHART_LAYOUT)
    decorate(fig, ok, x, pos)  # axis units and scale, intervals, busy and simulated marks, padding (chart_scale)
    add_draw_bars(fig, ok, front, x, pos)
    return fig


# The Pareto chart's frame, in the app and the reports: text readable when projected (14 px), the legend in rows
# above the plot that push it down (a container-anchored legend), so it never covers a point.
CHART_LAYOUT = dict(
    font=dict(size=14), height=520, margin=dict(l=60, r=20, t=20, b=50), hoverlabel=dict(align="left"),
    xaxis=dict(tickfont=dict(size=13), title_font=dict(size=14)),
    yaxis=dict(tickfont=dict(size=13), title_font=dict(size=14)),
    legend=dict(orientation="h", yref="container", y=1.0, yanchor="top", x=0.0, xanchor="left",
                itemsizing="constant", font=dict(size=13)),
)  # fmt: skip


def add_draw_bars(fig, ok: Sequence[Result], front: Sequence[Result], x: str, pos: dict | None = None) -> None:
    """Min-max bars of top-1 over the calibration draws, on every point with more than one draw.

    The bars are their own trace (thick and translucent, legend "calibration draws: min-max"), so they stay
    distinct from any interval drawn on the points themselves; the frontier is already computed on the means.
    A point whose range overlaps a frontier point's gets "not distinguishable from X with K draws" in its
    hover (the rule is :func:`qcore.metrics.draws.indistinguishable`). Each bar sits at its point's x
    (:func:`qcore.present.chart_x.positions`: MB on the size chart, never bytes; ``pos``: those positions, when the
    caller
    has them).
    """
    import plotly.graph_objects as go

    from qcore.metrics.draws import indistinguishable
    from qcore.present.chart_x import positions

    drawn = [r for r in ok if r.calib_draws > 1 and None not in (r.top1_min, r.top1_max)]
    if not drawn:
        return
    at = positions(ok, x) if pos is None else pos
    fig.add_trace(go.Scatter(
        x=[at[r.run_id].x for r in drawn], y=[r.top1 for r in drawn], mode="markers",
        name=f"calibration draws: min-max of top-1 ({_draws_word(drawn)})",
        marker=dict(symbol="line-ew-open", size=14, color="rgba(90,90,90,0.9)"),
        error_y=dict(type="data", symmetric=False, array=[r.top1_max - r.top1 for r in drawn],
                     arrayminus=[r.top1 - r.top1_min for r in drawn], thickness=4, width=8,
                     color="rgba(90,90,90,0.45)"),
        customdata=[[r.run_id] for r in drawn], hoverinfo="skip",
    ))  # fmt: skip
    extra = {}
    for run_id, hits in indistinguishable(ok, front).items():
        r = next(r for r in ok if r.run_id == run_id)
        names = ", ".join(html.escape(h.label) for h in hits)
        extra[run_id] = f"<i>not distinguishable from {names} with {r.calib_draws} draws</i>"
    rows = {r.run_id: r for r in drawn}
    for trace in fig.data:  # the points' own hover: the spread, and the warning
        cd, text = trace.customdata, trace.text
        if cd is None or text is None or trace.hoverinfo == "skip":
            continue
        trace.text = [t + _draw_hover(rows.get(c[0]), extra.get(c[0])) for c, t in zip(cd, text)]


def _draws_word(drawn: Sequence[Result]) -> str:
    ks = sorted({r.calib_draws for r in drawn})
    return f"{ks[0]} draws" if len(ks) == 1 else f"{ks[0]} to {ks[-1]} draws"


def _draw_hover(r: Result | None, warning: str | None) -> str:
    if r is None:
        return ""
    line = (f"<br>mean of {r.calib_draws} calibration draws: std {r.top1_std:.2f}, "
            f"range {r.top1_min:.2f} to {r.top1_max:.2f}%")
    return line + (f"<br>{warning}" if warning else "")


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
    lines += scale_lines(r)  # intervals, images, the FP32 reference, spread, busy (qcore.present.chart_scale)
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


def html_report(results: Sequence[Result], title: str = "qcore report", budget=None) -> str:
    """One self-contained HTML page: both charts (plotly.js inline), the table, the manifest; with a ``budget``
    (:class:`qcore.metrics.budget.Budget`), the point to ship, or why none, and the budget shaded on both charts.

    The figures carry an explicit template (:data:`REPORT_TEMPLATE`): a page made inside the app would
    otherwise inherit Streamlit's placeholder template, whose colours are ``#000001``, ``#000002``..."""
    import plotly.io as pio

    figs = [pareto_figure(results, "latency_ms_p50"), pareto_figure(results, "size_bytes")]
    for f in figs:
        f.update_layout(template=REPORT_TEMPLATE)
    from qcore.present.report_page import PAGE_CSS, decision_html, manifest_html, summary_html

    decision = decision_html(results, figs, budget)  # "" without a budget

    charts = [pio.to_html(f, full_html=False, include_plotlyjs=(i == 0), default_width="100%",
                          config={"responsive": True, "displaylogo": False}) for i, f in enumerate(figs)]  # fmt: skip
    cols = list(REPORT_COLUMNS)
    head = "".join(f'<th title="{html.escape(help_text(c))}">{html.escape(c)}</th>' for c in cols)
    body = []
    for r in results:
        row = r.row()
        cells = [report_cell(c, row[c]) + (draw0_label(r) if c in _DRAW0_COLUMNS and row[c] is not None else "")
                 for c in cols]  # fmt: skip
        body.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in cells) + "</tr>")
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
    # the page opens with a summary and the charts; it fits a screen's width (qcore.present.report_page)
    summary = summary_html(results, report_cell, baseline_of(rows))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p><b>{html.escape(report_subtitle(results))}</b></p>
{summary}{decision}
<h2>Accuracy against latency</h2>{charts[0]}
<h2>Accuracy against size</h2>{charts[1]}
<h2>How to read it</h2><p>The latency chart draws each row at the FP32 row's p50 divided by the row's speed-up (FP32 and
the row timed in turns, under one load), so its order is the order of the speed-ups; the table and the hover keep
each raw p50, timed under the load of its moment. Faded points were timed while the machine was busy.</p>
<p>{len(results)} results. Speed-ups are relative to FP32 eager measured interleaved in the same process;
<code>speedup_vs_best_fp32</code> is relative to the fastest FP32 way measured. Each column's unit and meaning:
its heading's tooltip, and the column key below the table. Intervals are 95%: top-1 (Wilson, on
<code>eval_images</code> images), its change against FP32 (paired, on the same images), the median latency (order
statistics, over <code>timed_calls</code> calls). With calibration draws (<code>calib_draws</code> above 1) every
accuracy number of a row is of the draws'
mean: <code>images_lost</code> and <code>images_gained</code> per draw, both intervals combining the draws' own (Rubin's
rules), so they include the spread between draws. <code>busy</code> names why a timing is not to be trusted.
Each row names the FP32 run it was measured against
(<code>baseline_run_id</code>):</p><ul>{ref_html or "<li>none among these rows</li>"}</ul>
<h2>Results</h2><div class="wide"><table><tr>{head}</tr>{"".join(body)}</table></div>
{key_html(cols)}
{manifest_html(list(manifests.values()))}
</body></html>"""


def key_html(cols: Sequence[str]) -> str:
    """The column key of the report's table, folded: each column, its unit and meaning
    (:mod:`qcore.metrics.columns`)."""
    items = "".join(f"<dt><code>{html.escape(c)}</code> ({html.escape(column(c).unit or 'text')})</dt>"
                    f"<dd>{html.escape(column(c).meaning)}</dd>" for c in cols)  # fmt: skip
    return (f"<details><summary>Column key: the unit and meaning of each column ({len(cols)}; every column of the "
            f"CSV: docs/columns.md)</summary><dl>{items}</dl></details>")


REPORT_TEMPLATE = "plotly_white"
# The report's table: what a reader needs to act on a row, each number with its scale.
REPORT_COLUMNS = (
    "label", "model", "dataset", "backend", "kernel", "top1", "top1_lo", "top1_hi", "top1_delta", "images_lost",
    "images_gained", "eval_images", "top1_delta_lo", "top1_delta_hi", "agreement", "latency_ms_p50",
    "latency_ms_lo", "latency_ms_hi", "latency_spread", "timed_calls", "fp32_latency_ms_p50", "speedup",
    "speedup_vs_best_fp32", "size_bytes", "size_ratio", "build_seconds", "ptq_algorithm_seconds", "pareto", "busy",
    "status", "error", "baseline_run_id",
)  # fmt: skip
# The cells that hold draw 0's numbers in a draw row stored before they described the draws' mean: labelled so.
_DRAW0_COLUMNS = ("top1_lo", "top1_hi", "images_lost", "images_gained", "top1_delta_lo", "top1_delta_hi")
_CELL_SPECS = {
    "top1": ".2f", "top1_lo": ".2f", "top1_hi": ".2f", "top1_delta": "+.2f", "top1_delta_lo": "+.2f",
    "top1_delta_hi": "+.2f", "agreement": ".1f", "latency_ms_p50": ".2f", "latency_ms_lo": ".2f",
    "latency_ms_hi": ".2f", "latency_spread": ".2f", "fp32_latency_ms_p50": ".2f", "speedup": ".2f",
    "speedup_vs_best_fp32": ".2f", "size_bytes": ",", "size_ratio": ".3f", "build_seconds": ".1f",
    "ptq_algorithm_seconds": ".1f",
    "load_avg": ".1f", "logit_kl": ".4f",
}  # fmt: skip


def report_cell(column: str, value) -> str:
    """A table cell of the HTML report: numbers rounded as the app shows them (91.900003 reads 91.90).

    >>> report_cell("top1", 91.900003), report_cell("top1_delta", -0.05), report_cell("size_bytes", 44_000_000)
    ('91.90', '-0.05', '44,000,000')
    """
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if column in ("images_lost", "images_gained") and isinstance(value, float):  # the mean per calibration draw
        return format(value, ".1f")
    spec = _CELL_SPECS.get(column)
    if spec and isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def report_subtitle(results: Sequence[Result]) -> str:
    """The report's heading line: models, datasets and when they were measured.

    >>> from qcore.quant.spec import QuantSpec
    >>> report_subtitle([Result(QuantSpec(), "resnet18", "fashion-mnist", created_at=0.0)])
    'resnet18 on fashion-mnist · measured 1970-01-01 00:00 UTC'
    """
    import time as _time

    models = ", ".join(sorted({r.model for r in results})) or DASH
    datasets = ", ".join(sorted({r.dataset for r in results})) or DASH
    when = sorted(r.created_at for r in results)
    day = lambda t: _time.strftime("%Y-%m-%d %H:%M UTC", _time.gmtime(t))  # noqa: E731
    span = DASH if not when else day(when[0]) if day(when[0]) == day(when[-1]) else f"{day(when[0])} to {day(when[-1])}"
    return f"{models} on {datasets} · measured {span}"


def write_html(results: Sequence[Result], path: Path | str, title: str = "qcore report", budget=None) -> None:
    """:func:`html_report` to ``path``, atomically."""
    atomic_write_bytes(Path(path), html_report(results, title, budget).encode())
