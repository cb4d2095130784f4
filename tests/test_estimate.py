"""qcore.runs.estimate.job_seconds: a job's cost from its own settings, against a hand count (issue 24, item 7).

The hand counts use mobilenet_v3_small's recorded training (936 steps of batch 128 at 32 px in 268 s): a forward
pass of one image is a third of a step's share per image, and a QAT fine-tune step of batch 128 is one training
step (1.5 times that for the QAT model).
"""

from __future__ import annotations

import json
import time

import pytest

from qcore.quant.spec import QuantSpec
from qcore.runs import estimate
from qcore.runs.store import Store
from qcore.runs.sweep_config import SweepConfig

STEP = 268.0 / 936  # seconds per training step of batch 128
FWD = STEP / 128 / 3  # seconds per image forward
BUILD = estimate.RECORDED_BUILD_S["aoti"]
INT8 = QuantSpec("int8", granularity="per-channel", calibration="minmax", mode="static")
INT4 = QuantSpec("int4", granularity="per-group", group_size=64, calibration="mse", mode="weight-only")


@pytest.fixture(autouse=True)
def _empty_build_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QCORE_BUILDS", str(tmp_path / "builds"))  # no build recorded on this machine
    monkeypatch.setattr("qcore.env.hardware.resolve_device", lambda device: "cpu" if device == "auto" else device)


def _cfg(**kw) -> dict:
    return SweepConfig(**kw).to_dict()


def test_the_offline_default_by_hand():
    e = estimate.job_seconds(_cfg(), [INT8, INT4])
    fp32 = 6.0 + 2000 * FWD + BUILD  # timing, the reference logits, the compiled FP32 reference's first build
    int8 = 6.0 + 2000 * FWD + 256 * FWD  # timing, evaluation, calibration (fx: nothing built)
    int4 = 6.0 + 2000 * FWD  # weight-only: no calibration images
    assert e.steps == pytest.approx((fp32, int8, int4))
    assert e.seconds == pytest.approx(fp32 + int8 + int4)
    assert "1 first AOTInductor C++ build (recorded on the project's 2-core CPU" in e.basis
    assert "evaluating 2,000 images 3 times" in e.basis and "calibrating on 256 images once" in e.basis


def test_draws_compiled_specs_and_no_compiled_reference_by_hand():
    cfg = _cfg(calib_draws=3, fp32_compiled=False, eval_limit=500, latency_budget_s=2.0)
    pt2e = INT8.replace(backend="pt2e")
    e = estimate.job_seconds(cfg, [INT8, pt2e, INT4])
    # each static spec: 3 draws of calibration (256) and evaluation (500); pt2e builds 2 shapes (1x3x32x32 timed,
    # 250x3x32x32 evaluated) per draw; INT4 weight-only reads no calibration images: one draw
    static = 2.0 + 3 * 500 * FWD + 3 * 256 * FWD
    assert e.steps == pytest.approx((2.0 + 500 * FWD, static, static + 3 * 2 * BUILD, 2.0 + 500 * FWD))
    assert "6 first AOTInductor C++ builds" in e.basis
    one_shape = estimate.job_seconds(_cfg(fp32_compiled=False, batch_size=250), [pt2e])
    assert one_shape.steps[1] == pytest.approx(6.0 + 2000 * FWD + 256 * FWD + BUILD)  # timed at the eval shape


def test_qat_fine_tunes_by_hand_the_control_once_per_schedule():
    qat_pt = QuantSpec("int8", granularity="per-tensor", mode="qat", qat_epochs=0.1)
    qat_pc = qat_pt.replace(granularity="per-channel")
    e = estimate.job_seconds(_cfg(fp32_compiled=False), [qat_pt, qat_pc])
    steps = round(0.1 * (60_000 // 128))  # 47 steps of batch 128 (mobilenet_v3_small's recipe)
    assert steps == 47
    control = steps * STEP + 6 * 2000 * FWD  # trained once, its curve evaluated 6 times
    qat = steps * STEP * 1.5 + 6 * 2000 * FWD + 256 * FWD  # PTQ's starting ranges first
    row = 6.0 + 2 * 2000 * FWD + 256 * FWD  # timing; PTQ and QAT evaluated (the pairing reads both); PTQ calibrated
    assert e.steps == pytest.approx((6.0 + 2000 * FWD, row + control + qat, row + 2000 * FWD + qat))
    assert "fine-tuning for QAT (3 fine-tune(s), FP32 controls included)" in e.basis


def test_what_a_finished_job_of_the_same_settings_made_is_loaded_not_counted(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    pt2e = INT8.replace(backend="pt2e")
    old = store.submit_job(_cfg(), [pt2e.to_dict()])
    store.update_job(old, state="done", finished_at=time.time())
    history = store.jobs(kind="sweep")
    e = estimate.job_seconds(_cfg(), [pt2e, INT4], history)
    assert e.steps == pytest.approx((6.0 + 2000 * FWD, 6.0 + 2256 * FWD, 6.0 + 2000 * FWD))  # nothing built
    other = estimate.job_seconds(_cfg(calib_draws=2), [pt2e], history)  # other calibration: other programs
    assert other.steps[0] == pytest.approx(6.0 + 2000 * FWD)  # the FP32 package is the same one
    assert other.steps[1] == pytest.approx(6.0 + 2 * 2256 * FWD + 2 * 2 * BUILD)
    # nothing of that job is borrowed but what it made: another budget costs what its settings say
    assert estimate.job_seconds(_cfg(latency_budget_s=1.0), [pt2e], history).steps[0] == pytest.approx(
        1.0 + 2000 * FWD)


def test_a_first_build_costs_what_this_machines_build_cache_recorded(tmp_path, monkeypatch):
    builds = tmp_path / "builds"
    builds.mkdir()
    for key, seconds in (("a", 30.0), ("b", 50.0)):
        (builds / f"aoti-{key}.pt2").write_bytes(b"x")
        (builds / f"aoti-{key}.json").write_text(json.dumps({"build_seconds": seconds}))
    assert estimate.build_seconds("aoti") == (40.0, "the mean of 2 build(s) in this machine's build cache")
    e = estimate.job_seconds(_cfg(), [INT4])
    assert e.steps[0] == pytest.approx(6.0 + 2000 * FWD + 40.0)


def test_time_again_costs_its_timing_and_the_builds_of_its_timing_shape_only():
    pt2e = INT8.replace(backend="pt2e")
    e = estimate.job_seconds({**_cfg(fp32_compiled=False), "retime_of": ["a", "b"]}, [pt2e, INT4])
    assert e.steps == pytest.approx((6.0, 6.0 + BUILD, 6.0))  # no image is calibrated on or evaluated
