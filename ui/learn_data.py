"""The Learn page's numbers, cached so that a slider move recomputes only the cheap parts.

Three layers of cache, each keyed by what it depends on:

- ``st.cache_resource`` (kept as objects, never copied): the loaded model and dataset (per model, dataset,
  weights), the BatchNorm-folded copy, the captured tensor (per layer and kind) and the fitted
  activation calibrators (per layer; the percentile one per percentile): the expensive parts, done once;
- ``st.cache_data``: everything derived (histogram, ranges, error splits, per-channel views, batch ranges),
  per bits, scheme, method and percentile: each at most a few tenths of a second on a 2-core CPU.

Every number comes from :mod:`qcore.learn` (qcore's primitives and observers); no torch code lives in
``pages/``. ``Key`` is the tensor's identity: ``(model, dataset, weights, layer, kind, fold_bn)``.

Each computation runs with :data:`THREADS` intra-op thread (one): its tensors are small (at most a few
million values), so a second thread gains little, and when another process keeps both cores busy (the
worker running a sweep) two threads spend their time waiting for each other. Measured with
``bench/learn_page.py`` while other jobs kept this 2-core machine busy (load average 4): a bits move on
``layer1.0.conv1``'s activations took 0.15 s with one thread and 5.8 s with two; the cold page 0.65 s
and 17 s. The worker, which measures, keeps its own threads: this is the app server's process only.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager

import streamlit as st

from qcore.learn import affine as aff
from qcore.learn import capture, dynamic, errors, granularity, ranges
from qcore.learn import source as src

Key = tuple  # (model, dataset, weights, layer, kind, fold_bn)
HIST_BINS = 160
THREADS = 1
_threads = {"inside": 0, "saved": 0, "lock": threading.Lock()}


@contextmanager
def _few_threads():
    """torch computes with ``THREADS`` threads inside (nested and concurrent uses share one setting; the last
    to leave restores the server's own)."""
    import torch

    with _threads["lock"]:
        if _threads["inside"] == 0:
            _threads["saved"] = torch.get_num_threads()
            torch.set_num_threads(THREADS)
        _threads["inside"] += 1
    try:
        yield
    finally:
        with _threads["lock"]:
            _threads["inside"] -= 1
            if _threads["inside"] == 0:
                torch.set_num_threads(_threads["saved"])


def _computed(fn):
    """A cached helper's body, run with few threads (applied under the cache decorator: only on a miss)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with _few_threads():
            return fn(*args, **kwargs)

    return run


@st.cache_resource(show_spinner="Loading the model and its dataset ...", max_entries=3)
@_computed
def _load(model: str, dataset: str, weights: str) -> src.Loaded:
    return src.load(src.Source(model, dataset, weights))


def load(model: str, dataset: str, weights: str) -> tuple[src.Loaded | None, str | None]:
    """The loaded model, or None and the reason it cannot be had (never trains a baseline)."""
    try:
        return _load(model, dataset, weights), None
    except (ValueError, OSError, RuntimeError) as exc:
        return None, str(exc)


def baseline_missing(model: str, dataset: str) -> str | None:
    """The message saying how to train a missing baseline, or None when one is cached."""
    source = src.Source(model, dataset, "baseline")
    try:
        return None if src.baseline_path(source) else src.missing_baseline_message(source)
    except ValueError as exc:
        return str(exc)


@st.cache_data(show_spinner=False, max_entries=8)
@_computed
def layers(model: str, dataset: str, weights: str) -> list[tuple[str, str]]:
    """``[(name, label)]`` of the model's Conv and Linear layers."""
    return [(info.name, info.label()) for info in capture.list_layers(_load(model, dataset, weights).model)]


def default_layer(model: str, dataset: str, weights: str) -> str:
    loaded = _load(model, dataset, weights)
    return capture.default_layer(capture.list_layers(loaded.model))


@st.cache_resource(show_spinner="Folding BatchNorm into the convolutions ...", max_entries=3)
@_computed
def _folded(model: str, dataset: str, weights: str):
    return src.fold_batchnorm(_load(model, dataset, weights).model)


def fold_note(model: str, dataset: str, weights: str) -> str:
    return _folded(model, dataset, weights)[1]


@st.cache_resource(show_spinner="Capturing the layer's tensor on calibration images ...", max_entries=8)
@_computed
def _captured(model: str, dataset: str, weights: str, layer: str, kind: str, fold_bn: bool) -> capture.Captured:
    loaded = _load(model, dataset, weights)
    if kind == "weights":
        net = _folded(model, dataset, weights)[0] if fold_bn else loaded.model
        return capture.capture_weights(net, layer)
    return capture.capture_inputs(loaded.model, layer, src.calibration_batches(loaded))


def captured(key: Key) -> capture.Captured:
    return _captured(*key)


@st.cache_resource(show_spinner="Feeding the calibrators ...", max_entries=8)
@_computed
def _stream_calibrators(key: Key) -> dict:
    methods = tuple(m for m in ranges.methods_for("activations") if m != "percentile")
    return ranges.fit_calibrators(captured(key), 99.99, methods)


@st.cache_resource(show_spinner=False, max_entries=16)
@_computed
def _percentile_calibrator(key: Key, percentile: float) -> dict:
    return ranges.fit_calibrators(captured(key), percentile, ("percentile",))


def calibrators(key: Key, percentile: float) -> dict | None:
    """The fitted activation calibrators (None for weights: their ranges come from weight_range)."""
    if key[4] != "activations":
        return None
    return {**_stream_calibrators(key), **_percentile_calibrator(key, percentile)}


@st.cache_data(show_spinner=False, max_entries=32)
@_computed
def stats(key: Key) -> dict:
    """What the tensor is: size, extent, spread, sign (the 99th percentile of |x| on the error sample)."""
    c = captured(key)
    x = c.values()
    sample = _error_values(key)
    return {"numel": c.numel, "min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()),
            "std": float(x.std()) if x.numel() > 1 else 0.0, "nonneg": bool(x.min() >= 0),
            "zeros": float((x == 0).float().mean()), "abs_p99": float(sample.abs().quantile(0.99)),
            "shape": c.shape_text(), "channels": c.channels, "images": c.images, "batches": len(c.batches),
            "error_values": sample.numel()}


@st.cache_data(show_spinner=False, max_entries=32)
@_computed
def histogram(key: Key, bins: int = HIST_BINS) -> tuple[list[float], list[int]]:
    """``(bin edges, counts)`` of every value of the tensor."""
    return value_histogram(captured(key).values(), bins)


def value_histogram(x, bins: int = HIST_BINS) -> tuple[list[float], list[int]]:
    """``(bin edges, counts)`` of the values of tensor ``x`` over their extent (also the Layers page's)."""
    import torch

    x = x.reshape(-1).float()
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        hi = lo + 1e-6
    counts = torch.histc(x, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return edges.tolist(), [int(c) for c in counts.tolist()]


@st.cache_data(show_spinner=False, max_entries=64)
@_computed
def method_ranges(key: Key, bits: int, symmetric: bool, percentile: float) -> dict[str, tuple[float, float]]:
    return ranges.all_ranges(captured(key), bits, symmetric, percentile, calibrators(key, percentile))


def affine(key: Key, method: str, bits: int, symmetric: bool, percentile: float) -> aff.Affine:
    lo, hi = method_ranges(key, bits, symmetric, percentile)[method]
    return aff.Affine.fit(lo, hi, bits, symmetric)


@st.cache_resource(show_spinner=False, max_entries=8)
@_computed
def _error_values(key: Key):
    return errors.error_values(captured(key))


@st.cache_data(show_spinner=False, max_entries=64)
@_computed
def by_method(key: Key, bits: int, symmetric: bool, percentile: float) -> list[errors.MethodError]:
    return errors.by_method(method_ranges(key, bits, symmetric, percentile), bits, symmetric, _error_values(key))


@st.cache_data(show_spinner="Computing the SQNR at every bit width ...", max_entries=32)
@_computed
def sqnr_curves(key: Key, symmetric: bool, percentile: float) -> dict[str, list[float]]:
    """``{method: [SQNR dB at 2..8 bits]}``; fills the ranges' cache for every width, so that a later bits
    move finds them there."""
    curves = errors.sqnr_by_bits(lambda b: method_ranges(key, b, symmetric, percentile), symmetric,
                                 _error_values(key))
    return {m: [s.sqnr_db for s in splits] for m, splits in curves.items()}


@st.cache_data(show_spinner=False, max_entries=64)
@_computed
def staircase(key: Key, method: str, bits: int, symmetric: bool, percentile: float) -> tuple[list[float], list[float]]:
    """``(x, x_hat)`` over the tensor's extent and the clipping range, with a margin."""
    a = affine(key, method, bits, symmetric, percentile)
    s = stats(key)
    lo, hi = min(s["min"], a.lo, a.grid_range[0]), max(s["max"], a.hi, a.grid_range[1])
    pad = 0.06 * (hi - lo or 1.0)
    x, y = aff.staircase(a, lo - pad, hi + pad)
    return x.tolist(), y.tolist()


@st.cache_data(show_spinner=False, max_entries=64)
@_computed
def schemes(key: Key, method: str, bits: int, percentile: float) -> dict[str, errors.SchemeView]:
    sym, asym = (method_ranges(key, bits, s, percentile)[method] for s in (True, False))
    return errors.schemes(sym, asym, bits, _error_values(key), captured(key).values())


@st.cache_data(show_spinner="Computing per-channel ranges ...", max_entries=32)
@_computed
def channels(key: Key, method: str, bits: int, symmetric: bool, percentile: float) -> granularity.ChannelView:
    return granularity.channel_view(captured(key), affine(key, method, bits, symmetric, percentile), method, percentile)


@st.cache_data(show_spinner="Quantizing at every group size ...", max_entries=32)
@_computed
def costs(key: Key, method: str, bits: int, symmetric: bool, percentile: float
          ) -> tuple[list[granularity.GroupCost], int]:
    c = captured(key)
    return granularity.weight_costs(c.batches[0], affine(key, method, bits, symmetric, percentile), method, percentile)


@st.cache_data(show_spinner=False, max_entries=32)
@_computed
def batch_ranges(key: Key, method: str, bits: int, symmetric: bool, percentile: float) -> dynamic.BatchRanges:
    return dynamic.static_vs_dynamic(captured(key), affine(key, method, bits, symmetric, percentile))


@st.cache_data(show_spinner=False, max_entries=64)
@_computed
def worked(key: Key, method: str, bits: int, symmetric: bool, percentile: float) -> list[str]:
    """The formula worked through for the tensor's largest value, its smallest and one in between."""
    s = stats(key)
    a = affine(key, method, bits, symmetric, percentile)
    mid = s["mean"]
    return [a.worked(v) for v in (s["max"], mid, s["min"])]


@st.cache_data(show_spinner=False, max_entries=64)
@_computed
def images(model: str, dataset: str, weights: str, indices: tuple[int, ...]) -> list:
    """Test images as the eye sees them (uint8 H x W x 3)."""
    return src.test_images(_load(model, dataset, weights).bundle, list(indices))
