"""Calibration methods other than entropy against independent references, and bad input for every method.

- MSE: a brute-force search over 2,000 clipping ranges on the raw values (activations, from the histogram) and
  1,000 per row (weights).
- percentile: ``numpy.percentile(..., method="inverted_cdf")`` (the nearest rank).
- bad input: an all-zero or constant tensor, NaN or Inf, one calibration image.

Entropy's reference is in ``tests/test_entropy_oracle.py``.
"""

import math

import numpy as np
import pytest
import torch

from qcore.quant.observers import get_calibrator, weight_range
from tests.calib_data import laplace, normal_with_outlier, relu_normal

# --- MSE against a brute-force search --------------------------------------------------------------------------


def _fq_mse(x: np.ndarray, lo: float, hi: float, qmin: int, qmax: int, symmetric: bool) -> float:
    """The mean squared error of fake-quantizing x on [lo, hi], computed from the affine formula in numpy."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        amax = max(-lo, hi)
        scale = max(amax / ((qmax - qmin) / 2), np.finfo(np.float32).eps)
        zp = (qmin + qmax + 1) // 2
    else:
        scale = max((hi - lo) / (qmax - qmin), np.finfo(np.float32).eps)
        zp = int(np.clip(qmin - np.round(lo / scale), qmin, qmax))
    q = np.clip(np.round(x / scale) + zp, qmin, qmax)
    return float(np.mean(((q - zp) * scale - x) ** 2))


def _brute_force_best(x: np.ndarray, qmin, qmax, symmetric, steps=2000) -> float:
    lo0, hi0 = float(x.min()), float(x.max())
    best = math.inf
    for f in np.linspace(0.01, 1.0, steps):
        lo, hi = lo0 * f, hi0 * f
        if symmetric:
            hi = max(-lo, hi)
            lo = -hi
        best = min(best, _fq_mse(x, lo, hi, qmin, qmax, symmetric))
    return best


@pytest.mark.parametrize("data", [relu_normal, laplace, normal_with_outlier], ids=["relu-normal", "laplace",
                                                                                    "outlier"])
@pytest.mark.parametrize("qmin,qmax,symmetric", [(0, 255, False), (-128, 127, True), (0, 15, False), (-8, 7, True)],
                         ids=["u8-asym", "s8-sym", "u4-asym", "s4-sym"])
def test_mse_is_within_a_few_percent_of_the_brute_force_optimum(data, qmin, qmax, symmetric):
    x = data(100_000)
    cal = get_calibrator("mse")
    cal.update(x)
    lo, hi = cal.solve(qmin, qmax, symmetric)
    xn = x.double().numpy()
    ours = _fq_mse(xn, lo, hi, qmin, qmax, symmetric)
    best = _brute_force_best(xn, qmin, qmax, symmetric)
    assert ours <= best * 1.05
    # and far better than no clipping where clipping pays (the outlier)
    if data is normal_with_outlier:
        full = _fq_mse(xn, float(x.min()), float(x.max()), qmin, qmax, symmetric)
        assert ours < full


@pytest.mark.parametrize("qmin,qmax,symmetric", [(-8, 7, True), (0, 15, False), (-128, 127, True)],
                         ids=["s4-sym", "u4-asym", "s8-sym"])
def test_weight_mse_per_row_is_within_a_few_percent_of_the_brute_force_optimum(qmin, qmax, symmetric):
    """Weights are known exactly: each row's (channel's, group's) MSE range against every clipping range on a
    fine grid, computed row by row in numpy."""
    rows = torch.stack([laplace(256, seed=s) * (1 + s) for s in range(6)] + [normal_with_outlier(255, seed=9)])
    lo, hi = weight_range(rows, "mse", qmin, qmax, symmetric)
    for r in range(rows.shape[0]):
        xn = rows[r].double().numpy()
        ours = _fq_mse(xn, float(lo[r]), float(hi[r]), qmin, qmax, symmetric)
        assert ours <= _brute_force_best(xn, qmin, qmax, symmetric, steps=1000) * 1.02


# --- percentile against numpy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [90.0, 99.0, 99.9, 99.99])
@pytest.mark.parametrize("data", [relu_normal, laplace, normal_with_outlier], ids=["relu-normal", "laplace",
                                                                                    "outlier"])
def test_percentile_equals_numpys_nearest_rank(data, p):
    x = data(100_000)
    cal = get_calibrator("percentile", p)
    for chunk in x.split(30_000):
        cal.update(chunk)
    xn = x.double().numpy()
    lo, hi = cal.solve(0, 255, False)
    assert hi == pytest.approx(float(np.percentile(xn, p, method="inverted_cdf")), rel=1e-6)
    assert lo == pytest.approx(float(np.percentile(xn, 100 - p, method="inverted_cdf")), rel=1e-6, abs=1e-7)
    lo, hi = cal.solve(-128, 127, True)
    t = float(np.percentile(np.abs(xn), p, method="inverted_cdf"))
    assert (lo, hi) == (pytest.approx(-t, rel=1e-6), pytest.approx(t, rel=1e-6))


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["minmax", "moving-average", "percentile", "entropy", "mse"])
def test_every_value_zero_gives_a_zero_range(method):
    cal = get_calibrator(method)
    cal.update(torch.zeros(1000))
    assert cal.solve(0, 255, False) == (0.0, 0.0)
    scale, zp = cal.qparams(0, 255, False)
    assert float(scale) > 0 and int(zp) == 0


@pytest.mark.parametrize("method", ["minmax", "moving-average", "percentile", "entropy", "mse"])
def test_a_constant_tensor_keeps_its_value(method):
    cal = get_calibrator(method)
    cal.update(torch.full((1000,), 3.0))
    lo, hi = cal.solve(0, 255, False)
    assert hi == pytest.approx(3.0, rel=0.02)
    scale, zp = cal.qparams(0, 255, False)
    assert float(scale) == pytest.approx(3.0 / 255, rel=0.02)


@pytest.mark.parametrize("method", ["minmax", "moving-average", "percentile", "entropy", "mse"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_nan_or_inf_is_named_never_a_silent_range(method, bad):
    cal = get_calibrator(method)
    cal.update(torch.randn(100))
    x = torch.randn(100)
    x[3] = bad
    with pytest.raises(ValueError, match="NaN" if math.isnan(bad) else "infinite"):
        cal.update(x)


def test_a_single_image_calibrates():
    """One calibration image (a batch of one) is enough for every method to give a finite range."""
    x = relu_normal(16 * 16 * 8)  # one image's activations
    for method in ("minmax", "moving-average", "percentile", "entropy", "mse"):
        cal = get_calibrator(method)
        cal.update(x.reshape(1, 8, 16, 16))
        lo, hi = cal.solve(0, 255, False)
        assert math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= float(x.max()) + 1e-6
