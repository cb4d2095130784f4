"""The "Layers kept in FP32" field of Explore and Sweep (``QuantSpec.keep_float``): a multiselect of the chosen
model's Conv and Linear layers in model order, kept in the URL as ``keep_float=a;b`` (the CSV column's form).
For a static INT8 spec (``acts=True``: Explore asks for it) it also offers the model's activation quantizers
(``act:layer1.0.relu``, :mod:`qcore.backends.act_quantizers`) that a spec can keep, on the backends that can
(fx, pt2e, auto); the model input's quantizer, which no spec can keep, is not offered.

A name the model does not have (from a link, or left from another model) is refused with the nearest names
(:func:`qcore.backends.layer_names.check_names`, the CLI's check); a backend that cannot leave layers in FP32 gets the
backends' own refusal (:func:`qcore.backends.base.keep_float_problem`), and ``auto`` picks one that can.
"""

from __future__ import annotations

import streamlit as st

from qcore.backends.base import KEEP_ACT_BACKENDS, KEEP_FLOAT_BACKENDS, keep_float_problem
from qcore.quant.spec import QuantSpec, SpecError

__all__ = ["URL_KEY", "model_layers", "model_acts", "backend_problem", "parse", "field"]

URL_KEY = "keep_float"


@st.cache_data(show_spinner="Listing the model's layers ...", max_entries=16)
def model_layers(model: str) -> tuple[list[str], str | None]:
    """``(names, problem)``: the model's Conv and Linear layers in model order (qcore.backends.layer_names)."""
    from qcore.backends.layer_names import LayerError, model_layer_names

    try:
        return model_layer_names(model), None
    except (LayerError, ValueError) as exc:
        return [], str(exc)


@st.cache_data(show_spinner="Listing the model's activation quantizers ...", max_entries=16)
def model_acts(model: str) -> list[tuple[str, str, str]]:
    """``(name, op, why it cannot be kept or "")`` of each activation quantizer of ``model`` (an FX trace on the
    meta device, about a second); [] for a model torch.ao FX cannot trace."""
    from qcore.backends.layer_names import model_act_quantizers

    try:
        return [(q.name, q.op, q.problem or "") for q in model_act_quantizers(model)]
    except ValueError:
        return []


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


def field(where, model: str, backends: list[str], *, key: str = "keep_float", what: str = "this spec",
          acts: bool = False) -> tuple[tuple[str, ...], list[str]]:
    """The multiselect; ``(names kept in FP32, problems)``. ``backends``: those the spec(s) may run on; the field
    is disabled, with the refusal, when none of them can keep a layer. ``acts``: also offer the activation
    quantizers (a static INT8 spec), when one of ``backends`` can keep them."""
    layers, problem = model_layers(model)
    if problem:
        return (), [f"Layers kept in FP32: {problem}"]
    quantizers = model_acts(model)
    offered = acts and any(b == "auto" or b in KEEP_ACT_BACKENDS for b in backends or ["auto"])
    names = layers + ([n for n, _, why in quantizers if not why] if offered else [])
    ops = {n: op for n, op, _ in quantizers}
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
    more = f" and {len(names) - len(layers)} activation quantizers" if len(names) > len(layers) else ""
    picked = where.multiselect(
        f"Layers kept in FP32 ({len(layers)} Conv/Linear layers{more} of {model}, in model order)", names, key=key,
        on_change=_write_url, args=(key,), disabled=blocked, placeholder="none: every layer quantized",
        format_func=lambda n: f"{n} ({ops[n]})" if n in ops else n,
        help=f"a mixed-precision point: these layers stay in FP32, the rest of {what} is quantized (the Layers "
             "page ranks the layers by what they cost). Backends that can: " + ", ".join(KEEP_FLOAT_BACKENDS)
             + " and auto" + (f"; an activation quantizer (act:...) runs the ops that write its tensor in FP32, on "
                              f"{', '.join(KEEP_ACT_BACKENDS)} and auto" if more else ""),
    )  # fmt: skip
    problems = []
    unknown = st.session_state.get(f"{key}-unknown") or []
    if unknown:
        known_acts = [n for n in unknown if n in ops]
        try:
            from qcore.backends.layer_names import check_names

            if known_acts:  # the model's, but not offered here: this spec or its backend cannot keep it
                why = next((w for b in backends if (w := keep_float_problem(QuantSpec(keep_float=(known_acts[0],)),
                                                                            b))), None) if acts else None
                raise SpecError(why or f"{known_acts[0]} is an activation quantizer of {model}, which only a static "
                                f"INT8 spec on {', '.join(KEEP_ACT_BACKENDS)} or auto can keep (the Explore page "
                                "offers them for such a spec)")
            check_names(QuantSpec(keep_float=tuple(unknown)), layers, _act_objects(model))
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
            from qcore.backends.layer_names import check_names

            check_names(QuantSpec(keep_float=tuple(picked)), layers, _act_objects(model))
        except SpecError as exc:
            problems.append(f"Layers kept in FP32: {exc}")
        act_refusals = [why for b in backends
                        if b != "auto" and (why := keep_float_problem(QuantSpec(keep_float=tuple(picked)), b))]
        if act_refusals and len(act_refusals) == len(backends):
            problems.append(f"Layers kept in FP32: {act_refusals[0]}")
        if refusals:
            where.caption(f"Only the {', '.join(b for b in backends if not backend_problem(b))} specs keep them: "
                          f"{refusals[0]}")
    return tuple(picked), problems


def _act_objects(model: str):
    """The model's activation quantizers as :func:`qcore.backends.layer_names.check_names` takes them."""
    from qcore.backends.act_quantizers import ActQuantizer

    return [ActQuantizer(n, op, (), "", "", i, why or None) for i, (n, op, why) in enumerate(model_acts(model))]
