"""Entropy (KL) calibration against TensorRT's search as NVIDIA's pytorch-quantization writes it
(``calib/histogram.py``, ``_compute_amax_entropy``): ``bins[0] = bins[1]``, then every cut one bin at a time, P with the
tail folded into its last bin, Q by ``np.digitize`` over ``linspace(0, i, nbins + 1)`` with empty bins left out, KL by
its definition, the last argmin. A plain loop in numpy, sharing nothing with ``qcore.quant.kl_search``. Then qcore's two
rules on top of it (the levels of an asymmetric grid, a spike away from 0) and the issue's case on the shipped
baseline.
"""

import math

import numpy as np
import pytest
import torch

from qcore.quant.kl_search import abs_levels, kl_threshold_bin, neutralise_spikes
from qcore.quant.observers import HIST_BINS, get_calibrator
from tests.calib_data import clipped_share, hardswish_like, image_input, laplace, normal_with_outlier, relu_normal

# --- the reference, written from pytorch-quantization's _compute_amax_entropy ----------------------------------


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / q.sum()
    m = p > 0
    if np.any(q[m] == 0):
        return math.inf
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def reference_entropy_cut(calib_hist: np.ndarray, nbins: int, start_bin: int) -> int:
    """The number of histogram bins the reference keeps (its amax is ``bin_edges[cut]``)."""
    bins = np.array(calib_hist, dtype=np.float64)
    bins[0] = bins[1]
    total = bins.sum()
    divergences, arguments = [], []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(np.arange(i), space) - 1
        digitized[bins[:i] == 0] = -1
        counts = np.zeros(nbins)
        members = np.zeros(nbins)
        for idx, d in enumerate(digitized):
            if d != -1:
                counts[d] += bins[idx]
                members[d] += 1
        new_density = np.zeros(i)
        for idx, d in enumerate(digitized):
            if d != -1:
                new_density[idx] = counts[d] / members[d]
        reference = bins[:i].copy()
        reference[-1] += bins[i:].sum()
        assert round(reference.sum()) == round(total)
        divergences.append(_kl(reference, new_density))
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return arguments[last_argmin]


def _abs_hist(x: torch.Tensor, nbins: int = HIST_BINS // 2) -> tuple[np.ndarray, float]:
    amax = float(x.abs().max())
    h, _ = np.histogram(x.abs().numpy(), bins=nbins, range=(0.0, amax))
    return h.astype(np.float64), amax


def _assert_same_cut(hist: np.ndarray, levels: int, ours: int | None = None) -> int:
    """Our cut (``kl_threshold_bin``'s unless given) is the reference's; on a floating-point near-tie, as good as
    the reference's by the reference's own KL."""
    ours = kl_threshold_bin(torch.from_numpy(hist), levels) if ours is None else ours
    ref = reference_entropy_cut(hist, levels, start_bin=levels)
    if ours != ref:
        kl_at = lambda i: reference_kl(_neutral(hist), i, levels)  # noqa: E731
        assert kl_at(ours) == pytest.approx(kl_at(ref), rel=1e-9, abs=1e-12), (ours, ref)
    return ours


def _neutral(hist: np.ndarray) -> np.ndarray:
    """The reference's first step: ``bins[0] = bins[1]``."""
    h = hist.copy()
    h[0] = h[1]
    return h


def reference_kl(bins: np.ndarray, i: int, nbins: int) -> float:
    space = np.linspace(0, i, num=nbins + 1)
    digitized = np.digitize(np.arange(i), space) - 1
    digitized[bins[:i] == 0] = -1
    new = np.zeros(i)
    for d in set(digitized.tolist()) - {-1}:
        m = digitized == d
        new[m] = bins[:i][m].sum() / m.sum()
    ref = bins[:i].copy()
    ref[-1] += bins[i:].sum()
    return _kl(ref, new)


# small histograms keep the reference loop quick; the search is the same at any size
@pytest.mark.parametrize("data", [relu_normal, laplace, normal_with_outlier], ids=["relu-normal", "laplace",
                                                                                    "outlier"])
@pytest.mark.parametrize("levels", [8, 16, 128, 256], ids=lambda v: f"levels{v}")
def test_kl_search_equals_the_reference(data, levels):
    hist, _ = _abs_hist(data(), nbins=512)
    _assert_same_cut(hist, levels)


def test_kl_search_equals_the_reference_on_a_full_histogram():
    hist, _ = _abs_hist(relu_normal(), nbins=HIST_BINS // 2)
    _assert_same_cut(hist, 128)


def test_kl_search_with_empty_bins_and_a_lone_tail_bin():
    hist = np.zeros(300)
    hist[:40] = np.arange(40, 0, -1)
    hist[10:20] = 0  # empty bins inside
    hist[299] = 3  # a far tail: cuts whose last kept bin is empty have infinite KL in the reference
    for levels in (8, 16, 128):
        _assert_same_cut(hist, levels)


def test_entropy_on_relu_normal_keeps_more_range_at_8_bits_than_at_4():
    """The issue's case: half the values exactly 0. 8 bits must keep more range than 4 and clip < 0.1%."""
    x = relu_normal(1_000_000)
    cal = get_calibrator("entropy")
    for chunk in x.split(100_000):  # batch by batch, as an observer sees it
        cal.update(chunk)
    lo8, hi8 = cal.solve(0, 255, False)
    lo4, hi4 = cal.solve(0, 15, False)
    assert lo8 == 0.0 and lo4 == 0.0
    assert hi8 > hi4
    assert clipped_share(x, lo8, hi8) < 0.001
    assert hi8 > 3.0  # the old search cut ReLU(N(0,1)) near 1.6 at 8 bits
    # the symmetric scheme spends half its levels on negatives: 128 for |x|
    lo, hi = cal.solve(-128, 127, True)
    assert lo == -hi and hi > hi4


def test_entropy_threshold_is_the_references_bin_edge():
    x = laplace()
    cal = get_calibrator("entropy")
    cal.update(x)
    hist = cal.abs_hist().numpy()
    for qmin, qmax, symmetric, levels in ((-128, 127, True, 128), (0, 255, False, 128), (-8, 7, True, 8)):
        cut = reference_entropy_cut(hist, levels, start_bin=levels) if levels < 128 else None
        lo, hi = cal.solve(qmin, qmax, symmetric)
        if cut is not None:
            assert hi == pytest.approx(cut * cal.R / hist.size)
        assert hi <= cal.R
        assert clipped_share(x, lo, hi) < 0.01


def test_entropy_clips_a_far_outlier_and_keeps_the_bulk():
    x = normal_with_outlier()
    cal = get_calibrator("entropy")
    cal.update(x)
    lo, hi = cal.solve(-128, 127, True)
    assert lo == -hi
    assert 3.0 < hi < 10.0  # N(0,1)'s tails, not the outlier at 50
    assert clipped_share(x, lo, hi) < 0.001


def test_entropy_of_uniform_data_keeps_the_whole_range():
    cal = get_calibrator("entropy")
    cal.update(torch.linspace(-1, 1, 20_001))
    assert cal.solve(-128, 127, True)[1] == pytest.approx(1.0, abs=0.01)


# --- how many levels |x| gets ----------------------------------------------------------------------------------


def test_abs_levels_reduce_to_the_references_two_cases_and_count_the_asymmetric_grid():
    assert abs_levels(-128, 127, True, -3.0, 5.0) == 128  # symmetric: half the grid on each side
    assert abs_levels(0, 255, False, 0.0, 5.0) == 256  # unsigned: all of it
    assert abs_levels(0, 255, False, -5.0, 0.0) == 256  # all on the negative side
    assert abs_levels(0, 255, False, -5.0, 5.0) == 128  # symmetric data on an asymmetric grid
    # hard-swish outputs: the grid's step is (8.56 + 0.375) / 255, so [0, 8.56] holds 8.56 / step levels
    n = abs_levels(0, 255, False, -0.375, 8.56)
    assert n == round(256 * 8.56 / (8.56 + 0.375)) == 245
    assert abs_levels(0, 15, False, -0.375, 8.56) == 15


def test_entropy_on_an_asymmetric_grid_searches_with_the_grids_own_levels():
    """Hard-swish outputs on the int8 kernels' asymmetric uint8 grid: the search uses the levels that grid
    puts on [0, max], and its cut is the reference's for that many levels."""
    x = hardswish_like()
    cal = get_calibrator("entropy")
    cal.update(x)
    levels = abs_levels(0, 255, False, cal.min_val, cal.max_val)
    assert levels > 200
    hist = cal.abs_hist().numpy()
    lo, hi = cal.solve(0, 255, False)
    _assert_same_cut(hist, levels, ours=round(hi / (cal.R / hist.size)))
    assert lo == pytest.approx(cal.min_val)  # the short negative side is kept whole
    assert clipped_share(x, lo, hi) < 0.001


# --- the case, on the shipped mobilenet_v3_small baseline ----------------------------------------------


def test_shipped_baseline_post_relu_layer_keeps_its_range(fashion_mnist, one_thread):
    """`/learn?kind=activations&layer=features.2.block.1.0&method=entropy`: half the values are exactly 0. The old
    search picked [0, 1.6] at 8 bits (5% clamped, 13 dB against min-max's 42) and a narrower 8-bit range than
    4-bit; now 8 bits keep more range than 4, clamp under 0.1% and come within 3 dB of min-max's SQNR."""
    from qcore.learn.capture import capture_inputs
    from qcore.learn.ranges import all_ranges
    from qcore.learn.source import Source, calibration_batches, load
    from qcore.quant.primitives import choose_qparams, fake_quantize

    loaded = load(Source(model="mobilenet_v3_small"))
    cap = capture_inputs(loaded.model, "features.2.block.1.0", calibration_batches(loaded))
    x = cap.values()
    assert float((x == 0).double().mean()) > 0.3  # a post-ReLU tensor: the zero spike is there

    def sqnr(lo, hi, bits):
        s, z = choose_qparams(lo, hi, 0, 2**bits - 1, False)
        err = x - fake_quantize(x, s, z, 0, 2**bits - 1)
        return 10 * math.log10(float((x**2).sum() / (err**2).sum()))

    r8, r4 = all_ranges(cap, 8, False, 99.99), all_ranges(cap, 4, False, 99.99)
    assert r8["entropy"][1] > r4["entropy"][1]
    assert clipped_share(x, *r8["entropy"]) < 0.001
    assert sqnr(*r8["entropy"], 8) > sqnr(*r8["minmax"], 8) - 3.0


# --- a spike of one repeated value away from 0 (a constant image background) ---------------------------------


@pytest.mark.parametrize("data", [relu_normal, laplace, normal_with_outlier, hardswish_like],
                         ids=["relu-normal", "laplace", "outlier", "hardswish"])
def test_smooth_data_has_no_spike_so_the_search_is_the_references(data):
    cal = get_calibrator("entropy")
    cal.update(data())
    hist = cal.abs_hist()
    out, start = neutralise_spikes(hist)
    assert start == 0 and torch.equal(out, hist.double())


def test_a_background_spike_is_neutralised_and_never_clipped():
    """The reference's search keeps [-0.81, 0.81] on such an input and clips every bright pixel (14% of the
    values here); with the spike's count set to its neighbours' and cuts from the spike up, the threshold is
    the reference's search on that histogram and nothing bright is lost."""
    x = image_input()
    cal = get_calibrator("entropy")
    cal.update(x)
    hist = cal.abs_hist()
    width = cal.R / hist.numel()
    ref_cut = reference_entropy_cut(hist.numpy(), 128, start_bin=128)
    assert clipped_share(x, -ref_cut * width, ref_cut * width) > 0.10  # what the reference alone does

    out, start = neutralise_spikes(hist)
    spike = int(round(0.81 / width - 0.5))
    assert start == spike + 1 and out[spike] == (hist[spike - 1] + hist[spike + 1]) / 2
    assert torch.equal(out[:spike], hist[:spike].double()) and torch.equal(out[spike + 1:], hist[spike + 1:].double())
    lo, hi = cal.solve(-128, 127, True)
    assert hi == pytest.approx(reference_entropy_cut(out.numpy(), 128, start_bin=start) * width)
    assert clipped_share(x, lo, hi) < 0.01
    lo, hi = cal.solve(0, 255, False)
    assert lo == pytest.approx(-0.81) and clipped_share(x, lo, hi) < 0.01
