"""The post-training algorithms inside a sweep: rows say what ran and what it cost, the CSV and JSON carry the
settings back, calibration draws refit them, a cancel during AdaRound leaves a cancelled row."""

from __future__ import annotations

import dataclasses

import pytest

from qcore.metrics.result import Result
from qcore.present.csv_load import csv_results
from qcore.present.report import csv_text
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.sweep import run_sweep
from qcore.runs.sweep_config import SweepConfig


@pytest.fixture
def config(fashion_mnist, resnet18_checkpoint):
    return SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), calib_size=64, eval_limit=64,
                       latency_budget_s=0.2, fp32_compiled=False)


SPECS = [
    FP32,
    QuantSpec("int8", granularity="per-tensor", equalize=True, bias_correction=True, backend="fx"),
    QuantSpec("int4", granularity="per-channel", mode="weight-only", rounding="adaround", adaround_iters=3,
              adaround_images=32, bias_correction=True),
    QuantSpec("int8", granularity="per-tensor", bias_correction=True, backend="ort"),
]


def test_rows_say_what_the_algorithms_did_and_what_it_cost(config):
    progress = []
    base, cle_bc, ada, ort = run_sweep(config, SPECS, progress=lambda d, t, m: progress.append(m))
    assert base.ptq_algorithm_seconds is None and base.status == "ok"
    for r in (cle_bc, ada):
        assert r.status == "ok", r.error
        assert r.ptq_algorithm_seconds is not None and r.ptq_algorithm_seconds > 0
    assert "+cle +bc" in cle_bc.label and "adaround(3 it, 32 img) +bc" in ada.label
    notes = " | ".join(cle_bc.notes)
    assert "cross-layer equalization: 8 pairs" in notes and "bias correction: " in notes
    assert any("AdaRound: 21 layers" in n for n in ada.notes)
    assert any("AdaRound: layer 1 of 21 (conv1)" in m for m in progress)  # the layer being rounded is shown
    assert ort.status == "skipped" and "bias correction" in ort.error
    assert "allowed: fx, pt2e, pt2e-openvino, weight-only" in ort.error


def test_the_csv_and_json_carry_the_settings_back(config):
    rows = run_sweep(dataclasses.replace(config, eval_limit=32), SPECS[:3])
    back = csv_results(csv_text(rows))
    assert [r.spec for r in back] == [r.spec for r in rows]
    assert back[0].ptq_algorithm_seconds is None
    assert [r.ptq_algorithm_seconds for r in back[1:]] == pytest.approx([r.ptq_algorithm_seconds for r in rows[1:]],
                                                                        abs=0.01)
    assert [Result.from_dict(r.to_dict()).spec for r in rows] == [r.spec for r in rows]
    assert back[2].spec.adaround_iters == 3 and back[1].spec.equalize and not back[1].spec.rounding == "adaround"


def test_calibration_draws_refit_bias_correction_for_weight_only(config):
    spec = QuantSpec("int4", granularity="per-tensor", mode="weight-only", bias_correction=True)
    _, r = run_sweep(dataclasses.replace(config, calib_draws=2, calib_size=32, eval_limit=32), [FP32, spec])
    assert r.status == "ok" and r.calib_draws == 2  # its model depends on the calibration images: measured twice
    _, plain = run_sweep(dataclasses.replace(config, calib_draws=2, calib_size=32, eval_limit=32),
                         [FP32, spec.replace(bias_correction=False)])
    assert plain.calib_draws == 1


def test_a_cancel_during_adaround_leaves_a_cancelled_row(config):
    said = []

    def cancel():
        return any("AdaRound: layer 3" in m for m in said)

    spec = QuantSpec("int4", mode="weight-only", rounding="adaround", adaround_iters=2, adaround_images=32)
    rows = run_sweep(config, [FP32, spec], progress=lambda d, t, m: said.append(m), cancel=cancel)
    assert rows[-1].status == "cancelled" and rows[-1].top1 is None
