"""The HTML report's page (issue 24, item 7): a summary and the charts first, the wide table in a box of its own,
the manifests folded with their long lists on one line; the summary's numbers are the table's own cells."""

from __future__ import annotations

import re

from qcore.present.report import html_report
from tests.test_chart_axes import rows


def _cells(table_html: str) -> list[list[str]]:
    return [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", table_html) if "<td>" in tr]


def test_the_report_opens_with_a_summary_and_the_charts_and_folds_the_manifest():
    rs = rows()
    for r in rs:
        r.manifest = {"torch": "2.x", "calib_draws": [{"seed": 0, "indices": list(range(768))}]}
    rs[1].pareto = rs[3].pareto = True
    page = html_report(rs)
    order = [page.index(h) for h in ("<h2>Summary</h2>", "<h2>Accuracy against latency</h2>",
                                     "<h2>Accuracy against size</h2>", "<h2>Results</h2>", "<details>")]
    assert order == sorted(order)
    assert '<div class="wide"><table>' in page  # the table scrolls in its own box: the page keeps the screen's width
    assert page.count("<pre>") == 1 and '"indices": [0, 1, 2, 3,' in page.replace("&quot;", '"')
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>Accuracy against latency</h2>")[0]
    assert "FP32 reference: top-1 91.00%, latency p50 3.00 ms." in summary
    assert "1 timed while the machine was busy" in summary
    head = re.findall(r"<th[^>]*>(.*?)</th>", page.split("<h2>Results</h2>")[1])  # headings carry their help
    table = {row[0]: dict(zip(head, row)) for row in _cells(page.split("<h2>Results</h2>")[1])}
    fields = {"spec": "label", "top-1 %": "top1", "Δ top-1 pts": "top1_delta", "speed-up ×": "speedup",
              "size ×": "size_ratio", "timed while busy": "busy"}  # fmt: skip
    shown = re.findall(r"<th>(.*?)</th>", summary)
    summary_rows = _cells(summary)
    assert len(summary_rows) == 2
    for row in summary_rows:  # the same number in the summary and in the table
        for heading, cell in zip(shown, row):
            assert table[row[0]][fields[heading]] == cell, (row[0], heading)
