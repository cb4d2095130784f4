"""A sweep as a list of exact specs: gathered from grids (several grids make a union), from Explore ("Add to the
sweep list") and typed in the words of their labels; previewed with a keep box before Run.

The list lives in the session (``st.session_state[KEY]``) and in the URL (``?spec=<label>`` once per spec), so
a link reproduces it. Labels are read back by :func:`qcore.quant.spec_text.parse_spec` (the CLI's ``--spec``
reads them the same way); the device is the sweep's, set when the job is submitted.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from qcore.quant.spec import QuantSpec, SpecError
from qcore.quant.spec_text import parse_spec, parse_specs

from .common import count_text, spec_problem
from .text import plain

__all__ = ["KEY", "URL_KEY", "SOURCE_KEY", "entries", "specs", "add", "clear", "from_url", "typed", "preview",
           "count_text"]

KEY = "spec_list"  # [{"spec": QuantSpec.to_dict(), "from": "grid" | "Explore" | "typed" | "link"}, ...]
URL_KEY = "spec"
SOURCE_KEY = "sweep_source"  # the Sweep page's "Run": "grid" or "list"


def entries() -> list[dict]:
    return st.session_state.setdefault(KEY, [])


def specs() -> list[QuantSpec]:
    return [QuantSpec.from_dict(e["spec"]) for e in entries()]


def _write_url() -> None:
    labels = [QuantSpec.from_dict(e["spec"]).label() for e in entries()]
    if labels:
        st.query_params[URL_KEY] = labels
    elif URL_KEY in st.query_params:
        del st.query_params[URL_KEY]


def add(new: list[QuantSpec], source: str) -> int:
    """Append the specs not in the list yet (the device is left to the sweep); returns how many were added."""
    have = set(specs())
    added = 0
    for spec in new:
        spec = spec.replace(device="auto")
        if spec.is_reference or spec in have:  # FP32 is measured first in every sweep anyway
            continue
        entries().append({"spec": spec.to_dict(), "from": source})
        have.add(spec)
        added += 1
    if added:
        st.session_state[SOURCE_KEY] = "list"
    _write_url()
    return added


def clear() -> None:
    st.session_state[KEY] = []
    st.session_state[SOURCE_KEY] = "grid"
    _write_url()


def from_url() -> list[str]:
    """A new session opened on a link that carries ``?spec=``: those specs become the list; returns the problems
    (a label that is no spec, named with the reason)."""
    if st.session_state.get(KEY) is not None:
        _write_url()
        return []
    st.session_state[KEY] = []
    problems, found = [], []
    for label in st.query_params.get_all(URL_KEY):
        try:
            found.append(parse_spec(label))
        except SpecError as exc:
            problems.append(f"The link's spec {label!r} was left out: {exc}")
    add(found, "link")
    return problems


def _add_typed(key: str) -> None:
    """Add the text area's specs (a callback: it runs before the page, which may then show the new list)."""
    st.session_state.pop(f"{key}-error", None)
    try:
        new = parse_specs(st.session_state.get(f"{key}-text", ""))
    except SpecError as exc:
        st.session_state[f"{key}-error"] = f"Nothing was added: {exc}"
        return
    bad = [f"{s.label()}: {why}" for s in new if (why := spec_problem(s.to_dict()))]
    if bad or not new:
        st.session_state[f"{key}-error"] = "Nothing was added: " + ("; ".join(bad) or "type a spec first")
        return
    n = add(new, "typed")
    st.session_state[f"{key}-text"] = ""
    st.toast(f"Added {n} spec(s) to the list" + (f"; {len(new) - n} were in it already" if len(new) > n else ""))


def typed(key: str) -> None:
    """A text area of specs in the words of their labels, one per line, and its Add button."""
    st.text_area(
        "Type specs, one per line",
        key=f"{key}-text",
        height=110,
        placeholder="INT8 per-tensor min-max sym static\nint8 per-channel entropy static\n"
        "int4 weight-only per-group 64 mse",
        help="the words of a spec's label, in any order and case: a precision, a granularity (per-group 64), a "
        "calibration (min-max, percentile 99.9, entropy, mse), sym or asym, a mode, a backend in brackets ([fx]); "
        "what is not said takes the default. python -m qcore sweep --spec reads the same words.",
    )
    st.button("Add to the list", key=f"{key}-add", icon=":material/playlist_add:", on_click=_add_typed, args=(key,))
    if err := st.session_state.get(f"{key}-error"):
        st.error(plain(err), icon=":material/block:")


def preview(rows: list[tuple[QuantSpec, str]], key: str) -> list[QuantSpec]:
    """The exact specs a Run measures, each with a keep box; returns the kept ones (in order).

    The editor's state is keyed by the specs shown, so ticks never move to another spec when the list changes.
    """
    if not rows:
        return []
    labels = [s.label() for s, _ in rows]
    digest = hashlib.sha1("\n".join(labels).encode()).hexdigest()[:10]
    df = pd.DataFrame({"keep": [True] * len(rows), "spec": labels, "from": [src for _, src in rows],
                       "kind": [s.kind for s, _ in rows]})  # fmt: skip
    edited = st.data_editor(
        df,
        key=f"{key}-{digest}",
        hide_index=True,
        disabled=["spec", "from", "kind"],
        column_config={
            "keep": st.column_config.CheckboxColumn("keep", help="untick to leave this spec out of the run",
                                                    width="small"),
            "spec": st.column_config.TextColumn("spec", width="large"),
            "from": st.column_config.TextColumn("from", help="a grid, Explore, typed in, or a link", width="small"),
            "kind": st.column_config.TextColumn("kind", help="float cast or quantization mode", width="small"),
        },
        width="stretch",
    )
    keep = list(edited["keep"]) if isinstance(edited, pd.DataFrame) else [True] * len(rows)
    return [s for (s, _), k in zip(rows, keep) if k]
