"""Issue 24, item 7 in the app (AppTest): Home names every kind of recent job, Home's and the Sweep page's cost
estimates are the job's own (qcore.runs.estimate.job_seconds of its settings and specs), never another job's time."""

from __future__ import annotations

import time

import pytest

from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep_config import SweepConfig
from tests.apptest import open_linked as _app


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _estimate_text(config: dict, specs: list) -> str:
    from qcore.runs.estimate import job_seconds

    return job_seconds(config, specs, Store().jobs(limit=50, kind="sweep")).text()


def test_home_names_the_model_of_layers_and_walk_jobs():
    store = Store()
    sweep = SweepConfig(model="resnet18").to_dict()
    spec = QuantSpec("int8").to_dict()
    store.submit_job({"sweep": sweep, "spec": spec, "accuracy": False}, [], kind="layers", total=1)
    store.submit_job({"sweep": sweep, "spec": spec, "order": "metric", "steps": 2}, [], kind="mixed-walk", total=1)
    at = _app()
    labels = [p.proto.label for p in at.get("page_link") if p.proto.label.count(" · ") > 2]  # not the sidebar
    assert len(labels) == 2, labels
    assert not any("None" in label for label in labels), labels
    assert all("resnet18 on Fashion-MNIST" in label for label in labels), labels
    assert any("layers: INT8 per-channel min-max asym static" in label for label in labels), labels
    assert any("mixed-walk: INT8" in label for label in labels), labels


def _default_specs() -> list[QuantSpec]:
    return [QuantSpec("int8", granularity="per-channel", calibration="minmax", mode="static"),
            QuantSpec("int4", granularity="per-group", group_size=64, calibration="mse", mode="weight-only")]


def test_home_cost_is_the_jobs_own_estimate_even_after_a_long_job_of_the_same_settings():
    store = Store()
    config = SweepConfig().to_dict()  # Home's default settings, 40 other specs that took an hour
    many = [QuantSpec("int8", calibration="percentile", percentile=p).to_dict() for p in range(60, 100)]
    jid = store.submit_job(config, many)
    store.claim_next_job(1)
    store.update_job(jid, state="done", done=41, finished_at=time.time() + 3600)
    at = _app()
    text = next(m.value for m in at.markdown if m.value.startswith("**What the first start costs"))
    assert "the last run of these settings" not in text, text
    assert f"The sweep: {_estimate_text(config, _default_specs())}." in text, text


def test_sweep_page_states_the_estimate_before_run_and_it_is_the_queued_jobs():
    at = _app("pages/sweep.py")
    caption = next(c.value for c in at.caption if c.value.startswith("**This sweep takes"))
    next(b for b in at.button if b.label == "Run sweep").click().run()
    job = Store().jobs()[0]
    assert caption == f"**This sweep takes {_estimate_text(job.config, job.specs)}**, once its baseline exists."
    at = _app("pages/sweep.py", g_mode=["static", "qat"], g_qat_epochs="0.1")  # a QAT spec: its fine-tunes counted
    caption = next(c.value for c in at.caption if c.value.startswith("**This sweep takes"))
    assert "fine-tuning for QAT" in caption, caption


def test_eta_weighs_a_qat_fine_tune_and_a_first_compiled_build(monkeypatch, tmp_path):
    """FP32 (with the compiled reference's first C++ build) done in 100 s of a job whose QAT spec is still to
    come: the time left is the estimate of what is left, scaled by how FP32 compared with its estimate, not
    100 s per step (old: 2 steps x 100 s)."""
    from qcore.runs import estimate
    from ui import jobs

    monkeypatch.setattr(jobs.st, "session_state", {})
    monkeypatch.setattr("qcore.env.hardware.resolve_device", lambda device: "cpu")
    # an empty build cache: the first build's figure is the recorded one, not the mean of the small builds the
    # rest of the suite left in the shared cache
    monkeypatch.setenv("QCORE_BUILDS", str(tmp_path))
    qat = QuantSpec("int8", granularity="per-tensor", mode="qat", qat_epochs=0.1)
    int4 = QuantSpec("int4", mode="weight-only", granularity="per-channel")
    store = Store()
    jid = store.submit_job(SweepConfig().to_dict(), [int4.to_dict(), qat.to_dict()])
    store.claim_next_job(1)
    store.update_job(jid, done=1, message="FP32 done")
    job = store.job(jid)
    steps = estimate.job_seconds(job.config, job.specs).steps
    assert len(steps) == 3 and steps[0] > 70 and steps[2] > 5 * steps[1]  # the build; the fine-tunes
    left = (steps[1] + steps[2]) * 100 / steps[0]
    assert jobs.eta_text(job, now=job.started_at + 100) == f"100 s elapsed, about {left:.0f} s left"
    assert jobs.eta_text(job, now=job.started_at + 110) == f"110 s elapsed, about {left - 10:.0f} s left"  # counts down
    store.update_job(jid, done=0)  # before the first step: the estimate less the time elapsed
    monkeypatch.setattr(jobs.st, "session_state", {})
    assert jobs.eta_text(store.job(jid), now=job.started_at + 30) == \
        f"30 s elapsed, about {sum(steps) - 30:.0f} s left"


def test_a_time_again_job_links_to_the_job_it_times():
    from qcore.metrics.result import Result
    from qcore.service.retime import submit_retime

    store = Store()
    jid = store.submit_job(SweepConfig().to_dict(), [QuantSpec("int8").to_dict()])
    store.claim_next_job(1)
    store.update_job(jid, state="done", done=2)
    store.add_result(Result(QuantSpec("int8"), "mobilenet_v3_small", "fashion-mnist", sweep_id=jid, run_id="q8"))
    again = submit_retime(store, ["q8"])
    at = _app("pages/sweep.py", job=again)
    assert any(f"time again of job {jid} (1 row(s))" in m.value for m in at.markdown), [m.value for m in at.markdown]
    link = next(p.proto for p in at.get("page_link") if f"rows of job {jid}" in p.proto.label)
    assert link.label == f"Timing only: these rows time again rows of job {jid} (open it)"
    assert f"job={jid}" in link.query_string, link
