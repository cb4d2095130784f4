"""What a sweep measures, through the pages (AppTest, no job runs): Explore's mode follows the precision; the
Sweep page's spec list (grids unioned, Explore's "Add to the sweep list", typed labels, a link's ``?spec=``),
its preview with keep boxes, and one job with the exact specs; how jobs are counted and their time left."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest
from streamlit.testing.v1 import AppTest

from qcore.quant.spec import QuantSpec
from tests.apptest import APP, ROOT  # noqa: F401
from tests.apptest import click as _click
from tests.apptest import errors as _errors
from tests.apptest import open_page as _app

FIVE = ["INT8 per-channel min-max asym static", "INT8 per-tensor min-max asym static",
        "INT8 per-channel entropy (KL) asym static", "INT8 per-tensor MSE sym static",
        "INT4 per-group(64) MSE asym weight-only"]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")








def _preview(at: AppTest):
    (editor,) = [d for d in at.data_editor if d.key.startswith("preview-")]
    return editor


def _store():
    from qcore.runs.store import Store

    return Store()


def test_int4_picks_the_mode_it_allows_on_the_page_and_from_a_link():
    at = _app("pages/explore.py")
    at.selectbox(key="precision").select("int4").run()
    assert at.selectbox(key="mode").value == "weight-only" and not _errors(at)
    at.selectbox(key="granularity").select("per-group").run()  # the crash: INT4 -> per-group
    at.selectbox(key="calibration").select("percentile").run()  # and percentile calibration
    assert at.selectbox(key="group").value == 64 and at.number_input(key="pct").value == 99.99
    assert not _errors(at) and not next(b for b in at.button if b.label == "Run").disabled
    at = _app("pages/explore.py", precision="INT4", granularity="per-group", calibration="percentile")
    assert at.selectbox(key="mode").value == "weight-only" and not _errors(at)
    at = _app("pages/sweep.py")  # the grid: INT4 added to static-only modes brings weight-only along
    at.pills(key="g_precision").set_value(["fp32", "int8", "int4"]).run()
    assert at.pills(key="g_mode").value == ["static", "weight-only"] and not _errors(at)
    assert "The grid: **3 specs**; 1 combination(s) skipped as impossible." in [m.value for m in at.markdown]


def test_a_typed_spec_list_is_previewed_trimmed_and_submitted_as_one_job():
    at = _app("pages/sweep.py")
    at.text_area(key="sweep-typed-text").input("\n".join([*FIVE, "int8 per-tensor percentile 99.9 static"])).run()
    _click(at, "Add to the list")
    assert at.segmented_control(key="sweep_source").value == "list" and not _errors(at)
    editor = _preview(at)
    assert list(editor.value["spec"]) == [*FIVE, "INT8 per-tensor percentile(99.9) asym static"]
    assert set(editor.value["from"]) == {"typed"} and all(editor.value["keep"])
    assert at.query_params["spec"] == list(editor.value["spec"])  # the list is in the URL
    at.session_state[editor.key] = {"edited_rows": {5: {"keep": False}}, "added_rows": [], "deleted_rows": []}
    at.run()  # the last one unticked: left out
    summary = "**5 specs + the FP32 baseline** to measure, the baseline first; 1 left out."
    assert summary in [m.value for m in at.markdown]
    _click(at, "Run sweep")
    (job,) = _store().jobs()
    assert [QuantSpec.from_dict(d).label() for d in job.specs] == FIVE and job.total == 6
    assert f"{job.job_id} · mobilenet_v3_small on Fashion-MNIST · 5 specs + the FP32 baseline" in \
        [m.value for m in at.markdown if m.value.startswith("#####")][-1]
    assert f"Job {job.job_id}: queued · 0/6 measured" in at.info[-1].value


def test_a_typed_line_that_is_no_spec_adds_nothing_and_says_why():
    at = _app("pages/sweep.py")
    at.text_area(key="sweep-typed-text").input("int8 static\nint4 static\n").run()
    _click(at, "Add to the list")
    assert any("Nothing was added: spec 2 ('int4 static'): mode='static' is not allowed with precision='int4'" in e
               for e in _errors(at)), _errors(at)
    assert "##### Spec list (0)" in [m.value for m in at.markdown]


def test_grids_and_explore_specs_make_one_list():
    at = _app("pages/explore.py", precision="INT4", granularity="per-group", calibration="MSE")
    _click(at, "Add to the sweep list")
    assert "Sweep list: 1 spec + the FP32 baseline" in [p.proto.label for p in at.get("page_link")]
    at.switch_page("pages/sweep.py").run()
    assert at.segmented_control(key="sweep_source").value == "list"
    assert list(_preview(at).value["spec"]) == [FIVE[4]] and list(_preview(at).value["from"]) == ["Explore"]
    _click(at, "Add the grid (1) to the list")  # the default grid: INT8 per-channel min-max static
    at.pills(key="g_granularity").set_value(["per-tensor", "per-channel"]).run()
    at.pills(key="g_calibration").set_value(["minmax", "entropy"]).run()
    _click(at, "Add the grid (4) to the list")  # a second grid: the union keeps each spec once
    assert list(_preview(at).value["spec"]) == [FIVE[4], FIVE[0], FIVE[1], "INT8 per-tensor entropy (KL) asym static",
                                                FIVE[2]]
    at.segmented_control(key="sweep_source").set_value("grid").run()  # Run measures the grid instead
    assert len(_preview(at).value) == 4
    _click(at, "Clear the list")
    assert at.segmented_control(key="sweep_source").value == "grid" and "spec" not in at.query_params


def test_a_link_with_specs_opens_on_that_list_and_names_what_it_left_out():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/sweep.py")
    at.query_params["spec"] = [FIVE[0], "int9 static", FIVE[4]]
    at.run()
    assert list(_preview(at).value["spec"]) == [FIVE[0], FIVE[4]] and set(_preview(at).value["from"]) == {"link"}
    assert any("The link's spec 'int9 static' was left out: 'int9'" in w.value for w in at.warning)
    assert at.query_params["spec"] == [FIVE[0], FIVE[4]]


def test_the_time_left_counts_the_phases_of_a_spec_and_counts_down(monkeypatch):
    import types

    import ui.jobs

    store = _store()
    jid = store.submit_job({"model": "mobilenet_v3_small", "dataset": "fashion-mnist"},
                           [QuantSpec().to_dict(), QuantSpec(granularity="per-tensor").to_dict()])
    store.claim_next_job(os.getpid())
    started = time.time() - 30
    with sqlite3.connect(store.path) as c:  # started 30 s ago; FP32 done and the first spec's first phase
        c.execute("UPDATE jobs SET started_at=?, done=?, message=? WHERE job_id=?",
                  (started, 1 + 1 / 3, "INT8 per-channel min-max asym static · evaluating", jid))
    # The page's clock, 30 s into the job however long the pages take to run: on a loaded machine the first run
    # (imports) takes seconds, each of which the real clock would add to the time left, scaled by the job's pace.
    now = [started + 30]
    monkeypatch.setattr(ui.jobs, "time", types.SimpleNamespace(time=lambda: now[0], monotonic=time.monotonic))
    at = _app("pages/sweep.py", job=jid)
    text = at.get("progress")[0].proto.text
    assert f"Job {jid}: running · 1/3 measured · INT8 per-channel min-max asym static · evaluating" in text
    assert "30 s elapsed, about " in text, text
    first = int(text.split("about ")[1].split(" s left")[0])
    # each step weighs its estimate (qcore.runs.estimate.job_steps, hand-counted in tests/test_estimate.py): FP32 and a
    # third of the first spec took 30 s, so what is left takes its estimate scaled by 30 s over theirs
    from qcore.runs.estimate import job_steps

    steps = job_steps(store.job(jid), store.jobs(limit=50, kind="sweep"))
    assert len(steps) == 3
    done_est = steps[0] + steps[1] / 3
    assert first == pytest.approx((sum(steps) - done_est) * 30 / done_est, abs=0.5)
    now[0] += 2
    at.run()
    later = int(at.get("progress")[0].proto.text.split("about ")[1].split(" s left")[0])
    assert later == first - 2  # no new phase: it counts down instead of growing
