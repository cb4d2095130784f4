"""The doctor on stored rows: the rows it refuses and why, which kind of loss it puts first, and the whole path
from the command line on a real small sweep (diagnosis stored as a job, the Layers measurement made once then read
from the cache, a suggestion measured as a move with ``--try``)."""

from __future__ import annotations

import os
import time

import pytest

from qcore.cli import main
from qcore.doctor.diagnose import Diagnosis, DoctorError, config_of, find_row, focus_of
from qcore.doctor.fix import Cause, Fix
from qcore.doctor.job import DOCTOR_KIND, latest_doctor_job, submit_doctor
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from qcore.service.worker import execute_job

INT4_PT = QuantSpec("int4", granularity="per-tensor", mode="weight-only")


def _rows(store: Store, **changes) -> tuple[Result, Result]:
    jid = store.submit_job(SweepConfig(model="resnet18").to_dict(), [INT4_PT.to_dict()])
    base = Result(spec=FP32, model="resnet18", dataset="fashion-mnist", status="ok", sweep_id=jid, top1=90.0)
    row = Result(spec=INT4_PT, model="resnet18", dataset="fashion-mnist", status="ok", sweep_id=jid, top1=85.0,
                 baseline_run_id=base.run_id, top1_delta_lo=-6.0, top1_delta_hi=-4.0, speedup=1.5, **changes)
    store.add_result(base)
    store.add_result(row)
    return base, row


def test_the_rows_the_doctor_refuses_say_why(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    base, row = _rows(store)
    assert find_row(store, row.run_id) == (row, base)
    with pytest.raises(DoctorError, match="there is no run 'nope'"):
        find_row(store, "nope")
    with pytest.raises(DoctorError, match="no run id given"):
        find_row(store, " ")
    with pytest.raises(DoctorError, match="is FP32, every point's reference"):
        find_row(store, base.run_id)
    failed = Result(spec=INT4_PT, model="m", dataset="d", status="error", error="out of memory")
    store.add_result(failed)
    with pytest.raises(DoctorError, match="is error: nothing was measured.*out of memory"):
        find_row(store, failed.run_id)
    orphan = Result(spec=INT4_PT, model="m", dataset="d", status="ok", top1=80.0)
    store.add_result(orphan)
    with pytest.raises(DoctorError, match="has no FP32 row to compare with"):
        find_row(store, orphan.run_id)
    with pytest.raises(DoctorError, match="has no FP32 row"):
        submit_doctor(store, orphan.run_id)  # refused before anything is queued
    assert latest_doctor_job(store, orphan.run_id) is None


@pytest.mark.parametrize("top1, hi, speedup, focus", [
    (85.0, -4.0, 1.5, "accuracy"),   # lost 5 points, interval below 0
    (89.9, -0.05, 0.5, "speed"),     # lost 0.1: below LOST_POINTS; slower than FP32
    (89.0, 0.3, 0.5, "speed"),       # lost 1 point, but the interval holds no loss
    (89.9, 0.1, 2.0, ""),            # neither
])  # fmt: skip
def test_the_kind_of_loss_put_first(top1, hi, speedup, focus):
    base = Result(spec=FP32, model="m", dataset="d", top1=90.0)
    row = Result(spec=INT4_PT, model="m", dataset="d", top1=top1, top1_delta_hi=hi, speedup=speedup)
    assert focus_of(row, base) == focus


def test_a_diagnosis_round_trips_through_its_stored_json():
    fix = Fix("per-channel weights", "a channel 5x wider", "accuracy", 1.5, spec=INT4_PT.replace(
        granularity="per-channel"), cause="channel-spread")
    d = Diagnosis(run_id="r", label="l", model="m", dataset="d", backend="fx", focus="accuracy", fp32_top1=90.0,
                  top1=85.0, lost_points=5.0, lost_interval=(4.0, 6.0), speedup=1.2,
                  causes=[Cause("channel-spread", "conv1", "5x", {"ratio": 5.0}, [fix])], suggestions=[fix],
                  seconds={"total": 1.0})
    import json

    back = Diagnosis.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back == d and back.suggestions[0].queueable


def test_the_settings_come_from_the_sweep_job_else_from_the_row(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    _, row = _rows(store)
    assert config_of(store, row) == SweepConfig(model="resnet18")
    loose = Result(spec=INT4_PT, model="resnet18", dataset="fashion-mnist", batch_size=8, input_shape="8x3x64x64",
                   eval_images=500, manifest={"calib_size": 128})
    c = config_of(store, loose)
    assert (c.batch_size, c.input_size, c.eval_limit, c.calib_size) == (8, 64, 500, 128)


def test_the_cli_refuses_an_unknown_run_with_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QCORE_DB", str(tmp_path / "runs.sqlite"))
    assert main(["doctor", "nope"]) == 2
    assert "there is no run 'nope'" in capsys.readouterr().err


def test_the_cli_diagnoses_caches_the_layers_and_measures_a_fix(tmp_path, monkeypatch, capsys, fashion_mnist):
    monkeypatch.setenv("QCORE_DB", str(tmp_path / "runs.sqlite"))
    store = Store()
    config = SweepConfig(model="mobilenet_v3_small", calib_size=32, eval_limit=100, latency_budget_s=0.2,
                         fp32_compiled=False)
    job = store.start_job(config.to_dict(), [INT4_PT.to_dict()], os.getpid())
    execute_job(store, job)
    store.update_job(job.job_id, state="done", finished_at=time.time())
    row = next(r for r in store.results(sweep_id=job.job_id) if not r.spec.is_reference)
    assert main(["doctor", row.run_id, "--no-profile"]) == 0
    out = capsys.readouterr().out
    assert "Weights or activations:" in out and "Fixes, in the order to try them" in out
    first = latest_doctor_job(store, row.run_id)
    assert first.kind == DOCTOR_KIND and first.state == "done"
    d = Diagnosis.from_dict(first.result)
    assert d.layers_source.startswith("measured now") and d.split["acts_top1"] == pytest.approx(d.fp32_top1)
    layer_jobs = [j for j in store.jobs(kind="layers") if j.state == "done"]
    assert len(layer_jobs) == 1
    assert main(["doctor", row.run_id, "--no-profile", "--layers", "cached"]) == 0  # the cache, not a new one
    assert latest_doctor_job(store, row.run_id).result["layers_source"].startswith("cached")
    assert len(store.jobs(kind="layers")) == 1
    n = next(i for i, f in enumerate(d.suggestions, 1) if f.queueable)
    capsys.readouterr()
    assert main(["doctor", row.run_id, "--try", str(n)]) == 0
    out = capsys.readouterr().out
    assert f"{row.label} -> {d.suggestions[n - 1].spec.label()}" in out and "gained" in out
    assert main(["doctor", row.run_id, "--try", "99"]) == 2
