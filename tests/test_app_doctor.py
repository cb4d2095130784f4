"""The "Why?" panel on the Sweep page: a point's diagnosis asked for (a doctor job queued; the worker is off here),
followed, shown with its fixes, and "Try it" queuing a fix into the same job; a measured fix drawn as an arrow from
its point. Rows and the diagnosis are inserted (nothing is measured)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from qcore.doctor.diagnose import Diagnosis
from qcore.doctor.fix import Cause, Fix
from qcore.doctor.job import latest_doctor_job
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.moves import Moves
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from tests.apptest import APP

INT8_PT = QuantSpec("int8", granularity="per-tensor", mode="static", backend="fx")
INT8_PC = INT8_PT.replace(granularity="per-channel")
WHY = "Why? What cost accuracy or speed here, and what to try"


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _row(spec, jid, t, top1, **kw) -> Result:
    return Result(spec, "resnet18", "fashion-mnist", backend="fx", top1=top1, top1_delta=top1 - 91.0,
                  top1_delta_lo=top1 - 91.5, top1_delta_hi=top1 - 90.5, latency_ms_p50=4.0, fp32_latency_ms_p50=10.0,
                  speedup=2.5, size_bytes=11_000_000, size_ratio=0.25, agreement=95.0, sweep_id=jid, created_at=t,
                  baseline_run_id="fp32run", **kw)


def _sweep() -> tuple[str, Result]:
    store = Store()
    jid = store.submit_job(SweepConfig(model="resnet18").to_dict(), [INT8_PT.to_dict()])
    row = _row(INT8_PT, jid, 2.0, 85.0, run_id="int8run")
    for r in (_row(FP32, jid, 1.0, 91.0, run_id="fp32run"), row):
        store.add_result(r)
    store.update_job(jid, state="done", done=2)
    return jid, row


def _open(jid: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/sweep.py")
    at.query_params.update({"job": jid})
    at.run()
    at.selectbox(key=f"detail-{jid}").set_value("int8run").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _diagnosis(row: Result) -> dict:
    fix = Fix("per-channel weights", "one channel 40x wider than the median", "accuracy", 4.2, spec=INT8_PC,
              cause="channel-spread")
    return Diagnosis(run_id=row.run_id, label=row.label, model=row.model, dataset=row.dataset, backend="fx",
                     focus="accuracy", fp32_top1=91.0, top1=85.0, lost_points=6.0, lost_interval=(5.5, 6.5),
                     speedup=2.5, causes=[Cause("channel-spread", "conv1", "one channel 40x wider", {}, [fix])],
                     suggestions=[fix, Fix("batch size 32", "overhead", "speed", 1.4, config={"batch_size": 32})],
                     seconds={"total": 12.0}).to_dict()


def test_asking_queues_one_diagnosis_and_the_panel_follows_it():
    jid, row = _sweep()
    at = _open(jid)
    assert any(e.label == WHY for e in at.expander)
    next(b for b in at.button if b.label == "Diagnose this point").click().run()
    job = latest_doctor_job(Store(), row.run_id)
    assert job is not None and job.state == "queued" and job.config == {"run_id": "int8run", "layers": "measure"}
    assert not at.exception and not [b for b in at.button if b.label == "Diagnose this point"]  # following it


def test_a_diagnosis_is_shown_and_try_it_queues_the_fix_into_the_same_job():
    jid, row = _sweep()
    store = Store()
    doc = store.submit_job({"run_id": row.run_id, "layers": "measure"}, [], kind="doctor", total=5)
    store.update_job(doc, state="done", result=_diagnosis(row), finished_at=1.0)
    at = _open(jid)
    shown = " ".join(m.value for m in at.markdown)
    assert "+6.00 points lost" in shown.replace("\\", "") and "channel-spread" in shown
    assert "1. [accuracy] per-channel weights" in shown.replace("\\", "")
    assert [b.label for b in at.button].count("Try it") == 1  # the batch-size fix changes the sweep: no button
    next(b for b in at.button if b.label == "Try it").click().run()
    assert any("added to job" in s.value for s in at.success)
    job = store.job(jid)
    assert job.state == "queued" and [QuantSpec.from_dict(s) for s in job.specs] == [INT8_PT, INT8_PC]
    assert [m.from_run_id for m in Moves(store.path).of_job(jid)] == ["int8run"]


def test_a_measured_fix_is_an_arrow_from_its_point():
    jid, row = _sweep()
    store = Store()
    from qcore.runs.moves import queue_fix

    queue_fix(store, row, INT8_PC, "per-channel weights")
    store.add_result(_row(INT8_PC, jid, 3.0, 90.0, run_id="fixrun"))
    store.update_job(jid, state="done")
    at = _open(jid)
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    arrows = [t for f in figs for t in f["data"] if str(t.get("name", "")).startswith("fix: ")]
    (arrow,) = arrows
    assert arrow["y"] == [85.0, 90.0] and "per-channel weights" in arrow["hovertext"][0]
    assert "top-1 +5.00 pts" in arrow["hovertext"][0]  # rows without per-image bits: the difference, said
