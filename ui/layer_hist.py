"""The Layers page's weight histogram: one layer's weights with the clipping range the spec's weight settings
choose drawn on it (:func:`qcore.layers.clipping.weight_ranges`), per tensor, or for the output channel or group
the user picks (default: the one with the widest range). The weight is shown with its BatchNorm folded in by
default, as the kernels hold it, the table's weight columns measure it and the Learn page opens.

The model comes from the Learn page's cache (:func:`ui.learn_data.load`, ``st.cache_resource``: loaded once per
model, dataset and weights; never trained here), the histogram from its :func:`ui.learn_data.value_histogram`
and the chart from :func:`ui.learn_charts.histogram`: one histogram and one range computation in the app.
"""

from __future__ import annotations

import streamlit as st

from qcore.layers.clipping import WeightRanges, rows_of, weight_ranges
from qcore.quant.spec import QuantSpec

from . import learn_charts as charts
from . import learn_data as data
from .common import dataset_label
from .text import plain

__all__ = ["resolve_weights", "ranges", "row_histogram", "section"]


@st.cache_data(show_spinner="Finding the job's weights ...", max_entries=8)
def resolve_weights(model: str, dataset: str, weights: str) -> tuple[str | None, str | None]:
    """``(weights, problem)``: the job's weights as the Learn loader names them. ``auto`` is what a sweep takes
    for it (torchvision's pretrained for ImageNet-class folders, else the cached baseline), never trained here."""
    if weights != "auto":
        return weights, None
    loaded, _ = data.load(model, dataset, "pretrained")
    if loaded is not None:
        return "pretrained", None
    missing = data.baseline_missing(model, dataset)
    return (None, missing) if missing else ("baseline", None)


def _key(model: str, dataset: str, weights: str, layer: str, fold: bool) -> tuple:
    return (model, dataset, weights, layer, "weights", fold)  # the Learn page's tensor key


@st.cache_data(show_spinner="Computing the clipping ranges ...", max_entries=32)
@data._computed
def ranges(key: tuple, spec: dict) -> WeightRanges:
    return weight_ranges(data.captured(key).batches[0], QuantSpec.from_dict(spec))


@st.cache_data(show_spinner=False, max_entries=64)
@data._computed
def row_histogram(key: tuple, spec: dict, row: int | None) -> tuple[list[float], list[int], int, int]:
    """``(edges, counts, values, clipped)`` of the whole weight (``row`` None) or of one row (channel, group;
    a short last group without its zero padding); clipped: values outside the row's range."""
    w = data.captured(key).batches[0]
    r = ranges(key, spec)
    if row is None:
        x, (lo, hi) = w.reshape(-1), (min(r.lo), max(r.hi))
    else:
        x, lo, hi = rows_of(w, QuantSpec.from_dict(spec))[row], r.lo[row], r.hi[row]
        per = r.count // w.shape[0]
        pad = per * r.row_len - w[0].numel() if r.granularity == "per-group" else 0
        if pad and row % per == per - 1:
            x = x[: r.row_len - pad]
    edges, counts = data.value_histogram(x)
    return edges, counts, int(x.numel()), int(((x < lo) | (x > hi)).sum())


def section(model: str, dataset: str, weights: str, layer: str, spec: QuantSpec, key: str) -> None:
    """The histogram of ``layer``'s weight with ``spec``'s clipping range; ``key`` prefixes the widgets."""
    st.markdown(f"##### Weights of {layer} and the clipping range of {spec.label()}")
    chosen, problem = resolve_weights(model, dataset, weights)
    loaded = None
    if chosen is not None:
        loaded, problem = data.load(model, dataset, chosen)
    if loaded is None:
        st.warning(plain(f"The weights of {model} ({weights}) on {dataset_label(dataset)} cannot be loaded here: "
                         f"{problem}"), icon=":material/block:")
        return
    toggles = st.container(horizontal=True)
    fold = toggles.toggle("BatchNorm folded in", value=True, key=f"{key}-fold",
                     help="on (as the Learn page opens): with the BatchNorm after it folded in (w × γ/√(σ²+ε) per "
                          "output channel), as the int8 and weight-only kernels hold it and the table's weight SQNR "
                          "measures it; off: the layer's own weight, before the fold")  # fmt: skip
    log_y = toggles.toggle("log scale", value=True, key=f"{key}-logy")
    tkey = _key(model, dataset, chosen, layer, fold)
    spec_d = spec.to_dict()
    try:
        r = ranges(tkey, spec_d)
    except ValueError as exc:
        st.error(plain(exc), icon=":material/block:")
        return
    out_channels = data.captured(tkey).batches[0].shape[0]
    c1, c2 = st.columns([1, 2], vertical_alignment="center")
    row = None
    if r.count > 1:
        widest = r.widest
        row = int(c1.number_input(
            f"{r.unit.capitalize()} (0 to {r.count - 1:,})", 0, r.count - 1, widest, key=f"{key}-row-{layer}-{r.unit}",
            help=f"{spec.granularity}: {r.count:,} {r.unit}s, each with its own range and scale; the default is "
                 f"the widest, {r.where(widest, out_channels)}",
        ))  # fmt: skip
        c2.markdown(f"**{r.count:,} {r.unit}s** of {r.row_len:,} weights; widest range: "
                    f"{r.where(widest, out_channels)}, [{r.lo[widest]:.4g}, {r.hi[widest]:.4g}]")
    i = row or 0
    edges, counts, n, clipped = row_histogram(tkey, spec_d, row)
    label = f"{spec.calibration if spec.mode == 'weight-only' else 'minmax'}"
    st.plotly_chart(charts.histogram(edges, counts, {label: (r.lo[i], r.hi[i])}, label, log_y),
                    key=f"{key}-hist", config={"displaylogo": False})
    where = "the whole tensor" if row is None else r.where(row, out_channels)
    st.markdown(f"Clipping range of {where}: **[{r.lo[i]:.4g}, {r.hi[i]:.4g}]**, scale **{r.scale[i]:.4g}**, "
                f"zero point **{r.zero_point[i]}**, codes {r.qmin}..{r.qmax}; {clipped:,} of {n:,} values outside "
                f"it (clamped). Chosen by {r.how}.")
