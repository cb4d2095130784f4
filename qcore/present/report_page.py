"""The HTML report's page around its charts and table: the style, the summary that opens it, the manifests.

The page fits a screen's width (the wide table scrolls inside its own box, its long headers wrap) and
opens with what a reader needs first: a summary (the FP32 reference, the Pareto rows, the rows timed while
busy), then the charts. The manifests, long lists of calibration image indices included, are folded away.
Every number of the summary is the table's own cell (:func:`qcore.present.report.report_cell` of the same field).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence

__all__ = ["PAGE_CSS", "SUMMARY_COLUMNS", "summary_html", "decision_html", "manifest_html"]

PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;font-size:15px;line-height:1.4}
h1{font-size:1.6em;margin:.2em 0} h2{font-size:1.25em;margin:1.2em 0 .4em}
.wide{overflow-x:auto;max-width:100%;border:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #bbb;padding:3px 6px;text-align:right;vertical-align:top} td{white-space:nowrap}
th{background:#f4f4f4;overflow-wrap:anywhere;min-width:4.5em}
td:first-child,th:first-child{text-align:left;position:sticky;left:0;background:#fff;min-width:12em;
  white-space:normal}
th:first-child{background:#f4f4f4}
.summary td:first-child{position:static} .summary td:last-child{text-align:left;font-size:12px;white-space:normal}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;background:#f8f8f8;padding:.6em}
"""

# The summary's columns: (field, heading); the cells are the results table's own (report_cell).
SUMMARY_COLUMNS = (("label", "spec"), ("top1", "top-1 %"), ("top1_delta", "Δ top-1 pts"), ("speedup", "speed-up ×"),
                   ("size_ratio", "size ×"), ("busy", "timed while busy"))  # fmt: skip


def summary_html(results: Sequence, cell: Callable[[str, object], str], reference) -> str:
    """What opens the report: how many rows, the FP32 reference, the Pareto rows as a small table, the busy ones."""
    ok = [r for r in results if r.ok]
    parts = [f"{len(results)} results, {len(ok)} measured"
             + (f", {len(results) - len(ok)} not (errors, skips, cancels)" if len(ok) < len(results) else "") + "."]
    if reference is not None:
        parts.append(f"FP32 reference: top-1 {cell('top1', reference.top1)}%, latency p50 "
                     f"{cell('latency_ms_p50', reference.latency_ms_p50)} ms.")
    busy = [r for r in ok if r.busy]
    if busy:
        parts.append(f"{len(busy)} timed while the machine was busy: drawn faded, their latencies not to be trusted; "
                     "time them again.")
    front = sorted((r for r in ok if r.pareto), key=lambda r: -(r.top1 or 0.0))
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in SUMMARY_COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell(f, getattr(r, f)))}</td>" for f, _ in SUMMARY_COLUMNS)
                   + "</tr>" for r in front)  # fmt: skip
    table = (f"<p>The Pareto rows (no other row at least as good on top-1, latency and size):</p>"
             f"<div class='wide'><table class='summary'><tr>{head}</tr>{rows}</table></div>") if front else ""
    return f"<h2>Summary</h2><p>{' '.join(parts)}</p>{table}"


def decision_html(results: Sequence, figs: Sequence, budget) -> str:
    """With a budget (:class:`qcore.metrics.budget.Budget`): the budget, the point to ship or why none, what was
    left out, and the budget shaded on ``figs`` (the latency chart, then the size chart); "" without one."""
    if budget is None:
        return ""
    from qcore.metrics.budget import choose
    from qcore.present.budget_chart import shade

    choice = choose(results, budget)
    said = [shade(fig, results, x, choice) for fig, x in zip(figs, ("latency_ms_p50", "size_bytes"))]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in choice.notes())
    return (f"<h2>The decision</h2><p>Budget: {html.escape(budget.text())}.</p>"
            f"<p class='decision'><b>{html.escape(choice.ship_text())}</b></p>"
            + (f"<ul>{notes}</ul>" if notes else "")
            + f"<p>On the latency chart: {html.escape(said[0])}</p><p>On the size chart: {html.escape(said[1])}</p>")


def _one_line_lists(text: str) -> str:
    """JSON lists of plain values on one line each (768 calibration indices were 768 lines)."""
    def join(m: re.Match) -> str:
        try:
            return json.dumps(json.loads(m.group(0)))
        except ValueError:
            return m.group(0)

    return re.sub(r"\[[^\[\]{}]*\]", join, text)


def manifest_html(manifests: Sequence[dict]) -> str:
    """The distinct manifests, folded: versions, hardware, threads, data and calibration images."""
    pres = "".join(f"<pre>{html.escape(_one_line_lists(json.dumps(m, indent=1)))}</pre>" for m in manifests)
    return (f"<details><summary>Manifest{'s' if len(manifests) > 1 else ''}: versions, hardware, threads, data and "
            f"calibration images ({len(manifests)})</summary><h2>Manifest</h2>{pres}</details>")
