"""``python -m qcore columns``: the column key, as text or as docs/columns.md's Markdown."""

from __future__ import annotations

import subprocess
import sys

from qcore.cli import main
from qcore.metrics.columns import KEY, column, markdown
from qcore.metrics.result import COLUMNS


def test_columns_prints_every_column_with_its_unit_and_meaning(capsys):
    assert main(["columns"]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if not line.startswith(" ")]
    assert heads == [f"{c.name} ({c.unit or 'text'})" for c in KEY] and len(heads) == len(COLUMNS)
    assert "created_at (ISO 8601 UTC)" in heads and "top1_delta (percentage points)" in heads
    flat = " ".join(out.split())
    assert column("group_size").meaning in flat
    assert "empty when granularity is not per-group" in flat


def test_columns_names_a_few_or_refuses_an_unknown_one(capsys):
    assert main(["columns", "draws_top1", "percentile"]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert heads == ["draws_top1 (%)", "percentile (percentile)"]
    assert main(["columns", "top_1"]) == 2
    err = capsys.readouterr().err
    assert "'top_1' is not a column; allowed: model, dataset," in err


def test_columns_markdown_is_the_docs_file_and_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "qcore", "columns", "--markdown"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == markdown() and "| `draws_top1` | % |" in proc.stdout
