"""The Runs page with 10,000 stored results (issue 28, item 5): it reads one page of them, not every row; paging,
sorting, filters, Compare, Delete, Time again and the exports of every matching row still work.

The rows are made up (``scripts/many_results.py``) and stored in the test's own data folder. Times are not
asserted (the machine may be busy): ``bench/runs_page.py`` prints them. What is asserted is what a session reads
and holds: how many stored rows become Results while the page renders, and the Python memory a render allocates
at its peak (tracemalloc), against bounds the page that read every row into a DataFrame exceeded many times over.
"""

from __future__ import annotations

import csv
import io
import shutil
import tracemalloc

import pytest
from streamlit.testing.v1 import AppTest

from qcore.metrics.result import Result
from qcore.present import report
from qcore.runs import query
from qcore.runs.query import Filters
from qcore.runs.store import Store
from scripts.many_results import fill
from tests.apptest import APP

N = 10_000
PAGE = query.PAGE_SIZES[1]  # the page's default rows a page


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A data folder holding 10,000 results; the run ids newest first."""
    home = tmp_path_factory.mktemp("runs-10k")
    return home, fill(home / "runs.sqlite", N)


@pytest.fixture
def home(many, monkeypatch):
    """The 10,000 results as this test's data folder (shared: for tests that change nothing)."""
    monkeypatch.setenv("QCORE_HOME", str(many[0]))
    return many[0]


@pytest.fixture
def home_copy(many, tmp_path, monkeypatch):
    """A copy of them as this test's data folder, for a test that deletes."""
    shutil.copy(many[0] / "runs.sqlite", tmp_path / "runs.sqlite")
    monkeypatch.setenv("QCORE_HOME", str(tmp_path))
    return tmp_path


def _runs() -> AppTest:
    """A new session opening Runs (only that page runs: what a visitor of /runs costs the server)."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _ids(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["run_id"])


def _said(at: AppTest) -> str:
    return next(c.value for c in at.caption if "result(s) match" in c.value)


@pytest.fixture
def counted(monkeypatch):
    """How many stored rows became Results since the last reset (Result.from_dict, as every reader makes them)."""
    calls = [0]
    made = Result.from_dict.__func__

    def from_dict(cls, d):
        calls[0] += 1
        return made(cls, d)

    monkeypatch.setattr(Result, "from_dict", classmethod(from_dict))
    return calls


def test_a_new_session_reads_one_page_of_10000_results(home, many, counted):
    _runs()  # the server warmed up: imports and cached resources, as before any visitor
    counted[0] = 0
    tracemalloc.start()
    try:
        at = _runs()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        at.multiselect(key="f_model").select("resnet18").run()
        change_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not at.exception, [e.value for e in at.exception]
    assert counted[0] <= 2 * PAGE, f"{counted[0]} stored rows were read for two renders of {PAGE} rows"
    assert peak < 25e6 and change_peak < 25e6, f"a render allocated {peak / 1e6:.0f} MB at its peak, a filter change " \
        f"{change_peak / 1e6:.0f} MB"  # the page that held every row in a DataFrame: hundreds of MB
    first = _runs()
    assert _ids(first) == many[1][:PAGE]  # newest first, as the store lists them
    assert _said(first).startswith(f"10,000 of 10,000 result(s) match; rows 1 to {PAGE} shown, newest first (page 1 "
                                   f"of {N // PAGE})")  # fmt: skip
    kept = Filters(model=("resnet18",))
    assert _ids(at) == [r.run_id for r in query.page(Store(), kept, limit=PAGE)]
    assert _said(at).startswith(f"{query.count(Store(), kept):,} of 10,000 result(s) match; rows 1 to {PAGE} shown")


def test_pages_orders_and_filters_through_the_page(home, many):
    at = _runs()
    at.number_input(key="runs-page").set_value(3).run()
    assert _ids(at) == many[1][2 * PAGE : 3 * PAGE]
    assert f"rows {2 * PAGE + 1} to {3 * PAGE} shown" in _said(at)
    at.segmented_control(key="runs-size").set_value(200).run()  # other rows a page: back to the first page
    assert at.number_input(key="runs-page").value == 1 and _ids(at) == many[1][:200]
    at.segmented_control(key="f_sort").set_value("top1").run()
    best = query.page(Store(), sort="top1", limit=200)
    assert _ids(at) == [r.run_id for r in best] and best[0].top1 == max(r.top1 for r in Store().results() if r.top1)
    at.number_input(key="runs-page").set_value(2).run()
    at.multiselect(key="f_status").select("error").run()  # a filter: the first page of what it keeps
    at.text_input(key="f_text").input("MSE").run()
    kept = Filters(status=("error",), text="MSE")
    assert at.number_input(key="runs-page").value == 1
    assert _ids(at) == [r.run_id for r in query.page(Store(), kept, limit=200, sort="top1")]
    assert _said(at).startswith(f"{query.count(Store(), kept)} of 10,000 result(s) match")
    assert at.multiselect(key="f_precision").options == ["BF16", "FP16", "FP32", "INT4", "INT8"]


def test_compare_keeps_a_row_picked_on_another_page(home, many):
    at = _runs()
    at.selectbox(key="cmp_a").select(many[1][3]).run()
    at.number_input(key="runs-page").set_value(5).run()
    assert at.selectbox(key="cmp_a").value == many[1][3]  # still kept by the filters, though on page 1
    at.selectbox(key="cmp_b").select(many[1][4 * PAGE + 7]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.label for m in at.metric][:2] == ["Top-1 %", "Agreement %"]
    other = next(r for r in Store().results(run_id=many[1][3]))
    at.multiselect(key="f_model").select(next(m for m in at.multiselect(key="f_model").options
                                              if m != other.model)).run()  # fmt: skip
    assert at.selectbox(key="cmp_a").value is None  # filtered out: no longer offered


def test_the_busy_rows_of_every_page_can_be_timed_again(home):
    at = _runs()
    busy = query.busy_ids(Store())
    assert f"Time again the busy-flagged {len(busy)} result(s)" in [b.label for b in at.button]
    at.multiselect(key="f_dataset").select("cifar10").run()
    kept = query.busy_ids(Store(), Filters(dataset=("cifar10",)))
    assert 0 < len(kept) < len(busy)
    assert f"Time again the busy-flagged {len(kept)} result(s)" in [b.label for b in at.button]


def test_deleting_an_fp32_row_on_a_later_page_says_what_was_measured_against_it(home_copy):
    store = Store()
    at = _runs()
    at.number_input(key="runs-page").set_value(4).run()
    shown = _ids(at)
    rows = {r.run_id: r for r in query.among(store, shown)}
    row = next(i for i, run_id in enumerate(shown) if rows[run_id].spec.is_reference)
    fp32 = rows[shown[row]]
    others = sum(r.baseline_run_id == fp32.run_id for r in store.results(sweep_id=fp32.sweep_id))
    at.session_state["runs-table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert any(f"{fp32.run_id} is the FP32 row of job {fp32.sweep_id}" in w.value and f"its {others} other row(s)"
               in w.value for w in at.warning), [w.value for w in at.warning]  # fmt: skip
    at.checkbox(key="delete_sure").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert query.total(store) == N - 1 and not store.results(run_id=fp32.run_id)
    assert _said(at).startswith(f"{N - 1:,} of {N - 1:,} result(s) match")
    assert at.number_input(key="runs-page").value == 4 and fp32.run_id not in _ids(at)


def test_the_exports_hold_every_matching_row_and_are_made_when_clicked(home, monkeypatch):
    """Without a selection the three files hold every row the filters keep, on every page, written from the store
    when a button is clicked (Streamlit calls the function then); nothing is made while the page renders."""
    from streamlit.delta_generator import DeltaGenerator

    made = {}

    def download_button(self, label, data, *args, **kwargs):
        made[label] = data
        return False

    monkeypatch.setattr(DeltaGenerator, "download_button", download_button)
    at = _runs()
    at.multiselect(key="f_model").select("resnet18").run()
    at.multiselect(key="f_status").select("ok").run()
    assert set(made) == {"Download CSV", "Download JSON", "Download HTML report"}
    assert all(callable(d) for d in made.values())  # deferred: nothing written yet
    kept = [r for r in Store().results() if r.model == "resnet18" and r.status == "ok"]
    rows = list(csv.DictReader(io.StringIO(made["Download CSV"]())))
    assert [r["run_id"] for r in rows] == [r.run_id for r in kept] and len(rows) > PAGE
    assert made["Download CSV"]() == report.csv_text(kept)
    assert made["Download JSON"]() == report.json_text(kept)
    at.session_state["runs-table"] = {"selection": {"rows": [0, 2], "columns": [], "cells": []}}
    at.run()
    assert made["Download CSV"] == report.csv_text([kept[0], kept[2]])  # the selected rows: made at once
