"""A CSV that explains itself (issue 29, item 3): one column key (qcore.metrics.columns) for every column the CSV
writes,
times as ISO 8601 UTC, empty cells where a setting does not apply, each calibration draw's top-1, docs/columns.md
rendered from the key, and CSVs and databases of older versions still loading.

The oracles: the UTC clock (``calendar.timegm``) and ``datetime.fromisoformat`` for the times; the draws' own
Accuracies for each draw's top-1 (their mean is the row's top-1); and ``tests/old_results.csv``, written by the
version before this one (commit 4774d8c) from the rows of :func:`rows`, for the old form.
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import html
import io
import json
import math
import sqlite3
import statistics
from datetime import datetime
from pathlib import Path

import pytest

from qcore.metrics.draws import apply_draws
from qcore.metrics.measure import Accuracy
from qcore.metrics.result import COLUMNS, Result
from qcore.present.report import csv_text, html_report, json_text
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store

ROOT = Path(__file__).resolve().parent.parent
OLD_CSV = Path(__file__).with_name("old_results.csv")
WHEN = calendar.timegm((2026, 12, 5, 12, 1, 57))  # 2026-12-05T12:01:57Z, by the UTC clock
N, FP32_RIGHT = 200, 183  # FP32: 91.5% of 200 images
DRAWS = [(3, 2), (2, 3), (4, 2)]  # (lost, gained) per draw: 91.0, 92.0 and 90.5%
FIELDS = {f.name for f in dataclasses.fields(Result)}


def _acc(lost: int, gained: int) -> Accuracy:
    both = FP32_RIGHT - lost
    counts = {"both": both, "lost": lost, "gained": gained, "neither": N - both - lost - gained}
    return Accuracy(top1=100.0 * (both + gained) / N, top5=99.0, agreement=97.0, logit_kl=0.01,
                    top1_delta=100.0 * (gained - lost) / N, n=N, counts=counts)


def rows() -> list[Result]:
    """A small sweep: FP32, INT8 static with 3 calibration draws, INT4 weight-only per-group percentile, FP16,
    INT8 QAT. Times in whole seconds (created_at) and milliseconds (the timed block), as this version writes them."""
    common = dict(model="resnet18", dataset="fashion-mnist", sweep_id="s29", baseline_run_id="fp32", threads=2,
                  input_shape="1x3x32x32", host="box", accuracy_host="box")
    base = Result(FP32, backend="float", kernel="native", top1=91.5, top5=99.5, top1_delta=0.0, agreement=100.0,
                  logit_kl=0.0, latency_ms_p50=10.0, speedup=1.0, size_bytes=44_000_000, size_ratio=1.0,
                  calib_seconds=0.0, quantize_seconds=0.0, run_id="fp32", created_at=float(WHEN),
                  timed_from=WHEN - 2.25, timed_to=WHEN - 1.5, **common)
    int8 = Result(QuantSpec("int8"), backend="fx", kernel="native", engine="x86", latency_ms_p50=4.0,
                  speedup=2.5, size_bytes=11_000_000, size_ratio=0.25, calib_seconds=0.5, quantize_seconds=0.75,
                  run_id="int8", created_at=WHEN + 60.0, timed_from=WHEN + 58.125, timed_to=WHEN + 59.0,
                  notes=["a note", "another"], **common)
    apply_draws(int8, [_acc(*d) for d in DRAWS], [4, 5, 6])
    int4 = Result(QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=64,
                            calibration="percentile", percentile=99.9), backend="weight-only", kernel="simulated",
                  top1=90.0, top1_delta=-1.5, calib_seconds=0.0, quantize_seconds=1.25, run_id="int4",
                  created_at=WHEN + 120.0, **common)
    fp16 = Result(QuantSpec("fp16"), backend="float", kernel="native", top1=91.5, calib_seconds=0.0,
                  quantize_seconds=0.125, run_id="fp16", created_at=WHEN + 180.0, retries=0, **common)
    qat = Result(QuantSpec("int8", granularity="per-tensor", mode="qat", qat_epochs=0.5), backend="fx",
                 kernel="native", top1=91.0, ptq_top1=90.0, control_top1=91.25, recovered=0.8, run_id="qat",
                 created_at=WHEN + 240.0, pareto=True, **common)
    return [base, int8, int4, fp16, qat]


def _table(text: str) -> dict[str, dict[str, str]]:
    return {row["run_id"]: row for row in csv.DictReader(io.StringIO(text))}


# -- the key ---------------------------------------------------------------------------------------------------


def test_every_column_the_csv_writes_has_an_entry_and_every_entry_names_a_column():
    from qcore.metrics.columns import FORMS, KEY

    header = next(csv.reader(io.StringIO(csv_text(rows()))))
    names = [c.name for c in KEY]
    assert [n for n in header if n not in names] == [], "CSV columns without an entry in qcore.metrics.columns.KEY"
    assert [n for n in names if n not in header] == [], "entries of qcore.metrics.columns.KEY that name no CSV column"
    assert header == names == list(COLUMNS)  # the key is in the CSV's order: docs/columns.md reads like the file
    assert len(set(names)) == len(names)
    for c in KEY:
        assert c.meaning and c.form in FORMS, c.name
        if c.form in ("number", "count"):
            assert c.unit, f"{c.name} is a number without a unit"


def test_docs_columns_md_is_the_rendered_key():
    from qcore.metrics.columns import markdown

    assert (ROOT / "docs" / "columns.md").read_text(encoding="utf-8") == markdown(), (
        "docs/columns.md is stale: regenerate it with "
        "`.venv/bin/python -m qcore columns --markdown > docs/columns.md` in the checkout")
    for name in COLUMNS:
        assert f"\n| `{name}` |" in markdown()


# -- the CSV and the JSON --------------------------------------------------------------------------------------


def test_times_are_iso_8601_utc_and_parse_back_to_the_stored_seconds():
    r = rows()[1]
    r.created_at, r.timed_from, r.timed_to = WHEN + 0.75, WHEN + 3.4567, WHEN + 4.0
    row = _table(csv_text([r]))["int8"]
    assert row["created_at"] == "2026-12-05T12:01:57Z"  # to the second, truncated like a clock
    assert datetime.fromisoformat(row["created_at"]).timestamp() == math.floor(r.created_at)
    assert row["timed_from"] == "2026-12-05T12:02:00.456Z"  # the timed block to the millisecond
    back = datetime.fromisoformat(row["timed_from"]).timestamp()
    assert 0 <= r.timed_from - back < 1e-3
    assert datetime.fromisoformat(row["timed_to"]).timestamp() == r.timed_to
    assert _table(csv_text([rows()[3]]))["fp16"]["timed_from"] == ""  # not timed: empty, not 1970


def test_settings_that_do_not_apply_are_empty_and_measured_zeros_stay():
    t = _table(csv_text(rows()))
    fp32, int8, int4, fp16, qat = (t[k] for k in ("fp32", "int8", "int4", "fp16", "qat"))
    settings = ("granularity", "group_size", "calibration", "percentile", "scheme", "mode", "qat_epochs")
    assert [fp32[k] for k in settings] == [""] * 7  # a float cast has none (they held n/a, 0, 0.0)
    assert (fp32["calib_seconds"], fp32["quantize_seconds"]) == ("", "")  # FP32 calibrates and converts nothing
    assert (int8["group_size"], int8["percentile"], int8["qat_epochs"]) == ("", "", "")  # they held 0 and 0.0
    assert (int8["granularity"], int8["calibration"], int8["calib_seconds"]) == ("per-channel", "minmax", "0.5")
    assert (int4["group_size"], int4["percentile"], int4["calib_seconds"]) == ("64", "99.9", "")
    assert (fp16["quantize_seconds"], fp16["calib_seconds"], fp16["mode"]) == ("0.125", "", "")
    assert (qat["qat_epochs"], qat["percentile"]) == ("0.5", "")
    assert (fp32["top1_delta"], fp32["retries"], fp32["speedup"]) == ("0.0", "0", "1.0")  # measured zeros stay
    assert int8["notes"] == "a note | another" and qat["pareto"] == "true" and fp32["pareto"] == "false"


def test_each_draws_top1_is_written_and_their_mean_is_the_rows_top1():
    row = _table(csv_text(rows()))["int8"]
    draws = [float(x) for x in row["draws_top1"].split(";")]
    assert draws == [100.0 * (FP32_RIGHT - lost + gained) / N for lost, gained in DRAWS] == [91.0, 92.0, 90.5]
    assert statistics.fmean(draws) == pytest.approx(float(row["top1"]), abs=1e-6)
    assert (min(draws), max(draws)) == (float(row["top1_min"]), float(row["top1_max"]))
    assert statistics.stdev(draws) == pytest.approx(float(row["top1_std"]), abs=1e-6)
    assert row["calib_seeds"] == "4;5;6" and row["calib_draws"] == "3"
    assert _table(csv_text(rows()))["fp32"]["draws_top1"] == ""  # FP32 was evaluated, not drawn
    j = {d["run_id"]: d for d in json.loads(json_text(rows()))}["int8"]
    assert j["draws_top1"] == draws and j["calib_seeds"] == [4, 5, 6]


def test_the_json_writes_times_and_nulls_as_the_csv_and_reads_back():
    rs = rows()
    out = {d["run_id"]: d for d in json.loads(json_text(rs))}
    csv_rows = _table(csv_text(rs))
    for r in rs:
        d = out[r.run_id]
        for name in ("created_at", "timed_from", "timed_to"):
            assert (d[name] or "") == csv_rows[r.run_id][name]
        back = Result.from_dict(d)
        assert back.spec == r.spec and back.created_at == r.created_at and back.timed_from == r.timed_from
        assert back.draws_top1 == r.draws_top1 and back.top1 == r.top1
    assert out["int8"]["spec"]["percentile"] is None and out["int8"]["spec"]["group_size"] is None
    assert out["int4"]["spec"]["percentile"] == 99.9 and out["fp32"]["spec"]["granularity"] is None
    assert out["qat"]["spec"]["qat_epochs"] == 0.5 and out["int8"]["spec"]["qat_seed"] is None
    assert out["fp32"]["calib_seconds"] is None and out["int8"]["calib_seconds"] == 0.5


# -- older files and databases ---------------------------------------------------------------------------------


def test_a_csv_of_the_version_before_loads_to_the_values_of_this_ones():
    from qcore.present.report import read_csv

    old_text = OLD_CSV.read_text(encoding="utf-8")
    old_header = next(csv.reader(io.StringIO(old_text)))
    assert "draws_top1" not in old_header and ",1796472117.0," in old_text and ",4 5 6," in old_text  # the old form
    old, new = read_csv(OLD_CSV), read_csv_text(csv_text(rows()))
    assert [r.run_id for r in old] == [r.run_id for r in new] == [r.run_id for r in rows()]
    for a, b in zip(old, new):
        assert a.spec == b.spec and a.label == b.label, a.run_id
        for name in old_header:  # the spec's settings compared above, the rest one by one
            if name in FIELDS:
                assert getattr(a, name) == getattr(b, name), (a.run_id, name)
    assert old[1].calib_seeds == [4, 5, 6] and old[0].created_at == WHEN and old[1].timed_from == WHEN + 58.125
    assert old[1].draws_top1 == [] and new[1].draws_top1 == [91.0, 92.0, 90.5]  # the old file had none: none invented
    # written again, the old file is this version's CSV of the same rows, less the column it lacked
    again, now = _table(csv_text(old)), _table(csv_text(rows()))
    for run_id, row in now.items():
        assert {k: v for k, v in again[run_id].items() if k != "draws_top1"} == \
            {k: v for k, v in row.items() if k != "draws_top1"}, run_id


def read_csv_text(text: str) -> list[Result]:
    from qcore.present.csv_load import csv_results

    return csv_results(text)


def test_this_versions_csv_reads_back_to_the_same_file():
    text = csv_text(rows())
    back = read_csv_text(text)
    assert csv_text(back) == text
    assert back[1].draws_top1 == [91.0, 92.0, 90.5] and back[2].spec.percentile == 99.9 and back[4].pareto is True


def test_a_database_row_of_before_the_draws_loads_and_exports_in_this_form(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for r in rows():
        store.add_result(r)
    with sqlite3.connect(store.path) as conn:  # the bodies as a version before the draws' fields stored them
        for run_id, body in conn.execute("SELECT run_id, body FROM results").fetchall():
            old = json.loads(body)
            for name in ("draws_top1", "draws_lost", "draws_gained", "retime_of", "qat_images_won"):
                del old[name]
            conn.execute("UPDATE results SET body=? WHERE run_id=?", (json.dumps(old), run_id))
    loaded = store.results(sweep_id="s29")  # how the app's pages and `qcore runs` load rows
    t = _table(csv_text(loaded))
    assert t["fp32"]["created_at"] == "2026-12-05T12:01:57Z" and t["int8"]["calib_seeds"] == "4;5;6"
    assert t["int8"]["draws_top1"] == "" and t["int8"]["percentile"] == "" and t["int4"]["percentile"] == "99.9"


# -- the HTML report and the app read the same key -------------------------------------------------------------


def test_the_html_report_headings_and_the_apps_table_help_read_the_key():
    from qcore.metrics.columns import column, help_text
    from qcore.present.report import REPORT_COLUMNS
    from ui import results as ui_results

    page = html_report(rows())
    for name in REPORT_COLUMNS:
        assert f'<th title="{html.escape(help_text(name))}">{name}</th>' in page, name
    assert "Column key" in page and f"<dd>{html.escape(column('top1_delta').meaning)}</dd>" in page
    assert set(ui_results.SHOWS) == set(ui_results.COLUMNS)  # every column of the app's table says what it shows
    for shown, names in ui_results.SHOWS.items():
        tip = ui_results.COLUMN_CONFIG[shown]["help"]
        assert all(column(n).meaning in tip and f"{n} ({column(n).unit or 'text'})" in tip for n in names), shown
    assert ui_results.TIPS["top1"] == column("top1").meaning
