"""The Sweep page's grid: several values per QuantSpec field, as pills; the grid is their product."""

from __future__ import annotations

import streamlit as st

from qcore.quant.spec import CHOICES, DEFAULT_GRID, GROUP_SIZES, allowed_modes

from . import ptq_settings
from .common import label_of
from .settings import HELP, PERCENTILES, qat_epochs_input
from .text import plain

__all__ = ["GRID_FIELDS", "spec_grid"]

# The grid's fields: (QuantSpec field, options, title). Pills rather than multiselects: every value stays
# readable (a multiselect clips its chips to stubs such as "I.." at 1024 px), and what is not chosen shows too.
GRID_FIELDS = [
    ("precision", CHOICES["precision"], "Precisions"), ("mode", CHOICES["mode"], "Modes"),
    ("granularity", CHOICES["granularity"], "Granularities"), ("group_size", GROUP_SIZES, "Group sizes (per-group)"),
    ("calibration", CHOICES["calibration"], "Calibrations"),
    ("percentile", PERCENTILES, "Percentiles (percentile calibration)"),
    ("scheme", CHOICES["scheme"], "Schemes"), ("backend", CHOICES["backend"], "Backends"),
]  # fmt: skip
GRID_FIELDS += ptq_settings.GRID_FIELDS  # the post-training algorithms: off/on, nearest/adaround
_DEFAULTS = {**DEFAULT_GRID, **ptq_settings.GRID_DEFAULTS}


def _grid_fit_mode(chosen: list[str] | None = None) -> None:
    """A precision added to the grid whose modes are all unchosen (INT4 with static only) adds the first mode it
    allows, so the new precision is in the grid rather than skipped whole. ``chosen``: the modes before (default:
    the mode pills' value)."""
    chosen = chosen if chosen is not None else st.session_state.get("g_mode") or []
    add = []
    for precision in st.session_state.get("g_precision") or []:
        modes = allowed_modes(precision)
        if modes and not set(modes) & set(chosen + add):
            add.append(modes[0])
    if add:
        st.session_state["g_mode"] = [m for m in CHOICES["mode"] if m in chosen + add]


def spec_grid() -> dict:
    """Several values per QuantSpec field (Sweep); the grid is their product. A link that names precisions and
    no modes opens with the first mode each precision allows added (``g_precision=INT4``: weight-only), as a
    precision chosen on the page does."""
    for text in ptq_settings.link_problems("g_"):  # (read before the pills take the URL's values)
        st.warning(plain(text), icon=":material/link_off:")
    cols = st.columns(2)
    out = {}
    for i, (name, options, title) in enumerate(GRID_FIELDS):
        key = f"g_{name}"
        if name == "mode" and key not in st.session_state and key not in st.query_params:
            _grid_fit_mode(list(DEFAULT_GRID["mode"]))  # (sets the state only when it adds a mode)
        out[name] = cols[i % 2].pills(
            title, list(options), selection_mode="multi", format_func=label_of, key=key, bind="query-params", wrap=True,
            default=None if key in st.session_state else list(_DEFAULTS[name]),  # (a callback may have set it)
            help=HELP.get(name) or ptq_settings.HELP.get(name),
            on_change=_grid_fit_mode if name == "precision" else ptq_settings.forget if name in ptq_settings.HELP
            else None, args=(key, "g_") if name in ptq_settings.HELP else None,
        )  # fmt: skip
    if "qat" in out["mode"]:
        out["qat_epochs"] = [qat_epochs_input(cols[len(GRID_FIELDS) % 2], key="g_qat_epochs")["qat_epochs"]]
    if "adaround" in (out["rounding"] or []):  # AdaRound's numbers: one value each
        out |= ptq_settings.grid_numbers(cols[(len(GRID_FIELDS) + 1) % 2])
    return out
