"""The "Layers kept in FP32" field of Explore and Sweep (``QuantSpec.keep_float``): a multiselect of the chosen
model's Conv and Linear layers in model order, kept in the URL as ``keep_float=a;b`` (the CSV column's form).

A name the model does not have (from a link, or left from another model) is refused with the nearest names
(:func:`qcore.layers.names.check_names`, the CLI's check); a backend that cannot leave layers in FP32 gets the
backends' own refusal (:func:`qcore.backends.base.keep_float_problem`), and ``auto`` picks one that can.
"""

from __future__ import annotations

import streamlit as st

from qcore.backends.base import KEEP_FLOAT_BACKENDS, keep_float_problem
from qcore.spec import QuantSpec, SpecError

__all__ = ["URL_KEY", "model_layers", "backend_problem", "parse", "field"]

URL_KEY = "keep_float"


@st.cache_data(show_spinner="Listing the model's layers ...", max_entries=16)
def model_layers(model: str) -> tuple[list[str], str | None]:
    """``(names, problem)``: the model's Conv and Linear layers in model order (qcore.layers.names)."""
    from qcore.layers.names import LayerError, model_layer_names

    try:
        return model_layer_names(model), None
    except (LayerError, ValueError) as exc:
        return [], str(exc)


def backend_problem(backend: str) -> str | None:
    """Why ``backend`` cannot keep layers in FP32 (None for auto, which picks one that can)."""
    if backend == "auto":
        return None
    return keep_float_problem(QuantSpec(keep_float=("a",)), backend)


def parse(value: str | None) -> list[str]:
    """``"a;b"`` -> ``["a", "b"]`` (the URL's and CSV's form)."""
    return [n.strip() for n in (value or "").split(";") if n.strip()]


def _write_url(key: str) -> None:
    names = [*st.session_state.get(key, [])]
    st.session_state.pop(f"{key}-unknown", None)  # a new choice replaces what the link named
    if names:
        st.query_params[URL_KEY] = ";".join(names)
    elif URL_KEY in st.query_params:
        del st.query_params[URL_KEY]


def field(where, model: str, backends: list[str], *, key: str = "keep_float", what: str = "this spec"
          ) -> tuple[tuple[str, ...], list[str]]:
    """The multiselect; ``(names kept in FP32, problems)``. ``backends``: those the spec(s) may run on; the field
    is disabled, with the refusal, when none of them can keep a layer."""
    names, problem = model_layers(model)
    if problem:
        return (), [f"Layers kept in FP32: {problem}"]
    if key not in st.session_state:  # a new page: the link's value
        wanted = parse(st.query_params.get(URL_KEY))
        st.session_state[key] = [n for n in names if n in wanted]  # (in model order)
        st.session_state[f"{key}-unknown"] = [n for n in wanted if n not in names]
    else:  # another model chosen: its names only, the others said
        chosen = st.session_state[key]
        gone = [n for n in chosen if n not in names]
        if gone:
            st.session_state[key] = [n for n in chosen if n in names]
            st.session_state[f"{key}-unknown"] = [*st.session_state.get(f"{key}-unknown", []), *gone]
    refusals = [why for b in backends if (why := backend_problem(b))]
    blocked = bool(backends) and len(refusals) == len(backends)
    picked = where.multiselect(
        f"Layers kept in FP32 ({len(names)} Conv/Linear layers of {model}, in model order)", names, key=key,
        on_change=_write_url, args=(key,), disabled=blocked, placeholder="none: every layer quantized",
        help=f"a mixed-precision point: these layers stay in FP32, the rest of {what} is quantized (the Layers "
             "page ranks the layers by what they cost). Backends that can: " + ", ".join(KEEP_FLOAT_BACKENDS)
             + " and auto",
    )  # fmt: skip
    problems = []
    unknown = st.session_state.get(f"{key}-unknown") or []
    if unknown:
        try:
            from qcore.layers.names import check_names

            check_names(QuantSpec(keep_float=tuple(unknown)), names)
        except SpecError as exc:  # (always raised: the names are unknown)
            problems.append(f"Layers kept in FP32: {exc}. The field holds this model's layers only: choose there, "
                            "or leave the unknown name(s) out")
        where.button("Leave the unknown layer names out", key=f"{key}-drop", on_click=_write_url, args=(key,),
                     icon=":material/backspace:")
    if blocked:
        where.caption(f":material/block: {refusals[0]}")
        if picked:
            problems.append(f"Layers kept in FP32: {refusals[0]}")
        return (), problems
    if picked:
        try:
            from qcore.layers.names import check_names

            check_names(QuantSpec(keep_float=tuple(picked)), names)
        except SpecError as exc:
            problems.append(f"Layers kept in FP32: {exc}")
        if refusals:
            where.caption(f"Only the {', '.join(b for b in backends if not backend_problem(b))} specs keep them: "
                          f"{refusals[0]}")
    return tuple(picked), problems
