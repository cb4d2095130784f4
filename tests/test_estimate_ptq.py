"""qcore.runs.estimate_ptq: the post-training algorithms' time in a job's estimate (issue 25): AdaRound's grows with
its steps and is said as "including AdaRound (~N)"; a spec without the algorithms costs what it did."""

from __future__ import annotations

import pytest

from qcore.quant.spec import QuantSpec
from qcore.runs import estimate, estimate_ptq
from qcore.runs.sweep_config import SweepConfig

INT8 = QuantSpec("int8", backend="fx")
INT4 = QuantSpec("int4", mode="weight-only")
FWD = 268.0 / 936 / 128 / 3  # mobilenet_v3_small's recorded forward pass, seconds per image (tests/test_estimate.py)


@pytest.fixture(autouse=True)
def _empty_build_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QCORE_BUILDS", str(tmp_path / "builds"))
    monkeypatch.setattr("qcore.env.hardware.resolve_device", lambda device: "cpu" if device == "auto" else device)


def _cfg(**kw) -> dict:
    return SweepConfig(auto_probe=False, **kw).to_dict()  # (auto's first-use probe is not this test's)


def test_specs_without_the_algorithms_cost_what_they_did(monkeypatch):
    before = estimate.job_seconds(_cfg(), [INT8, INT4])
    monkeypatch.setattr(estimate, "ptq_seconds", lambda *a: pytest.fail("a spec without algorithms was counted"))
    assert estimate.job_seconds(_cfg(), [INT8, INT4]) == before
    assert "post-training" not in before.basis and estimate_ptq.ptq_seconds(INT8, "resnet18", FWD, 256) == (0, 0)


def test_adarounds_time_grows_with_its_steps_and_is_said():
    costs = [estimate.job_seconds(_cfg(), [INT4.replace(rounding="adaround", adaround_iters=n)])
             for n in (100, 500, 2000)]  # fmt: skip
    assert costs[0].seconds < costs[1].seconds < costs[2].seconds
    plain = estimate.job_seconds(_cfg(), [INT4]).seconds
    grown = [c.seconds - plain for c in costs]  # AdaRound's share: the steps' part scales with them
    assert grown[2] - grown[1] == pytest.approx(1500 / 400 * (grown[1] - grown[0]), rel=1e-6)
    assert "including AdaRound (~" in costs[1].basis and "rough" in costs[1].basis
    assert costs[1].text().startswith("about ")  # an estimate, said as one


def test_adaround_by_hand():
    """mobilenet_v3_small: per layer, two passes that stop at it over the images and a fixed share, then each step's
    forward and backward on 32 images, the weights' element-wise work and the step's own."""
    layers = estimate_ptq.model_layers("mobilenet_v3_small")
    count, weights = len(layers), sum(w for _, _, w in layers)
    spec = INT4.replace(rounding="adaround", adaround_iters=500, adaround_images=128)
    step = 3 * 32 * FWD + weights * estimate_ptq.ADAROUND_WEIGHT_S + count * estimate_ptq.ADAROUND_STEP_S
    assert estimate_ptq.ptq_seconds(spec, "mobilenet_v3_small", FWD, 256) == (
        0.0, pytest.approx(count * 128 * FWD + 500 * step + count * estimate_ptq.ADAROUND_LAYER_S))
    assert count == 54 and 60 < 500 * step < 200  # about a minute or two on the project's CPU


def test_equalization_is_a_second_and_bias_correction_a_pass_per_layer_per_draw():
    cle, _ = estimate_ptq.ptq_seconds(INT8.replace(equalize=True), "resnet18", FWD, 256)
    assert cle == estimate_ptq.CLE_S == 1.0
    bc, _ = estimate_ptq.ptq_seconds(INT8.replace(bias_correction=True), "resnet18", FWD, 256)
    assert bc == pytest.approx(256 * FWD * (1 + 21 / 2))
    one = estimate.job_seconds(_cfg(), [INT8.replace(bias_correction=True)])
    two = estimate.job_seconds(_cfg(calib_draws=2), [INT8.replace(bias_correction=True)])
    assert "for the post-training algorithms" in one.basis and "AdaRound" not in one.basis
    assert two.seconds - one.seconds > 256 * FWD * 11  # fitted again on the second draw's images
