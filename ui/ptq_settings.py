"""The post-training algorithms' widgets (``QuantSpec.equalize``, ``bias_correction``, ``rounding`` and AdaRound's
numbers; :mod:`qcore.quant.spec_ptq`): one value each on Explore, pills on the Sweep grid, each with one line of help
that ends with its paper.

Every value is kept in the URL like the other settings: ``?equalize=on&bias_correction=on&rounding=adaround&
adaround_iters=1000`` on Explore, ``?g_equalize=off&g_equalize=on&g_rounding=adaround`` on Sweep. A link's value that
is not allowed (``?rounding=up``) is said, with what is allowed, and left out (the setting keeps its default).
"""

from __future__ import annotations

import streamlit as st

from qcore.quant.spec import CHOICES, FLOAT_PRECISIONS, QuantSpec, SpecError
from qcore.quant.spec_ptq import ADAROUND_BATCH, MAX_ADAROUND_IMAGES, MAX_ADAROUND_ITERS, PAPERS, PTQ_DEFAULTS

from .text import plain

__all__ = ["TITLES", "HELP", "FLAGS", "GRID_FIELDS", "GRID_DEFAULTS", "single", "grid_numbers", "link_problems",
           "forget"]

FLAGS = ("off", "on")  # how the URL and the Sweep grid write equalize and bias_correction
TITLES = {
    "equalize": "Cross-layer equalization (+cle)",
    "bias_correction": "Bias correction (+bc)",
    "rounding": "Rounding",
    "adaround_iters": "AdaRound steps per layer",
    "adaround_images": "AdaRound images",
}
_CLE = f"[Nagel et al. 2019]({PAPERS['equalize']})"
_ADA = f"[Nagel et al. 2020]({PAPERS['rounding']})"
HELP = {  # one line each, ending with the paper
    "equalize": "rescales consecutive layers joined by a ReLU so their per-channel weight ranges match, before "
    f"quantizing; every backend; about a second · {_CLE}",
    "bias_correction": "adds to each layer's bias the mean shift its quantized weights cause, measured on the "
    f"calibration images; backends fx, pt2e, weight-only (and auto) · {_CLE}",
    "rounding": "nearest: each weight to its closest code; adaround: up or down as learned layer by layer on the "
    f"calibration images (minutes on a CPU); backends fx, pt2e, weight-only (and auto) · {_ADA}",
    "adaround_iters": f"optimizer steps per layer, 1 to {MAX_ADAROUND_ITERS:,} (the paper: 10,000 on a GPU); "
    f"AdaRound's time grows with it · {_ADA}",
    "adaround_images": f"calibration images each layer's rounding is fitted on, {ADAROUND_BATCH} to "
    f"{MAX_ADAROUND_IMAGES:,} (no more than the calibration images there are) · {_ADA}",
}
# The Sweep grid's pills: (QuantSpec field, options, title), as ui.grid_settings.GRID_FIELDS; their defaults
GRID_FIELDS = [("equalize", FLAGS, TITLES["equalize"]), ("bias_correction", FLAGS, TITLES["bias_correction"]),
               ("rounding", CHOICES["rounding"], "Roundings")]  # fmt: skip
GRID_DEFAULTS = {"equalize": ["off"], "bias_correction": ["off"], "rounding": [PTQ_DEFAULTS["rounding"]]}
_PROBLEMS = "ptq-link-problems"


def _why_not(name: str, raw: str, grid: bool) -> str | None:
    """Why a link's value for field ``name`` is not allowed (QuantSpec's own message), or None; the grid's pills
    take off and on only, Explore's boxes true and false too."""
    flags = FLAGS if grid else (*FLAGS, "true", "false")
    if name in ("equalize", "bias_correction") and raw.strip().lower() not in flags:
        return f"{name}={raw!r} is not allowed; allowed: off, on"
    try:
        QuantSpec("int8", **{"rounding": "adaround" if name.startswith("adaround") else "nearest", name: raw})
    except SpecError as exc:
        return str(exc)
    return None


def link_problems(prefix: str = "") -> list[str]:
    """What the page's link asked for that is not allowed, each named with what is (read once a session, before the
    widgets take the URL's values; a value left out is dropped from the URL)."""
    said = st.session_state.get(f"{prefix}{_PROBLEMS}")
    if said is None:
        said = {}
        for name in PTQ_DEFAULTS:
            key = prefix + name
            for raw in st.query_params.get_all(key):
                if why := _why_not(name, raw, bool(prefix)):
                    said[key] = f"The link's {key}={raw!r} was left out: {why}"
            if key in said and name in ("equalize", "bias_correction") and not prefix:
                del st.query_params[key]  # (Explore's flags are bound here, not by Streamlit, which drops the rest)
        st.session_state[f"{prefix}{_PROBLEMS}"] = said
    return list(said.values())


def forget(key: str, prefix: str = "") -> None:
    """A value chosen on the page replaces what the link said."""
    (st.session_state.get(f"{prefix}{_PROBLEMS}") or {}).pop(key, None)


def _write_flag(key: str) -> None:
    forget(key)
    if st.session_state.get(key):
        st.query_params[key] = "on"
    else:
        st.query_params.pop(key, None)


def _flag(where, name: str) -> bool:
    """A checkbox kept in the URL as ``on`` (absent: off)."""
    if name not in st.session_state:  # a new page, or the box shown again: the link's value
        raw = (st.query_params.get(name) or "").strip().lower()
        st.session_state[name] = raw in ("on", "true")
    return where.checkbox(TITLES[name], key=name, help=HELP[name], on_change=_write_flag, args=(name,))


def _numbers(places, prefix: str = "") -> dict:
    """AdaRound's steps per layer and images, one value each, in ``places`` (two containers, one a number)."""
    out = {}
    for where, (name, low, high, step) in zip(places, (("adaround_iters", 1, MAX_ADAROUND_ITERS, 100),
                                                       ("adaround_images", ADAROUND_BATCH, MAX_ADAROUND_IMAGES,
                                                        ADAROUND_BATCH))):  # fmt: skip
        out[name] = int(where.number_input(
            TITLES[name], low, high, PTQ_DEFAULTS[name], step=step, key=prefix + name, bind="query-params",
            help=HELP[name], on_change=forget, args=(prefix + name, prefix),
        ))  # fmt: skip
    return out


def single(precision: str, mode: str, calib_size: int) -> tuple[dict, list[str]]:
    """Explore's controls, for an integer precision in a post-training mode (a float cast quantizes nothing; QAT
    trains its weights instead): ``(QuantSpec fields, problems)``. A link's values that were left out are said."""
    for text in link_problems():
        st.warning(plain(text), icon=":material/link_off:")
    if precision in FLOAT_PRECISIONS or mode == "qat":
        return {}, []
    st.caption(f"Post-training algorithms: win back accuracy without training ({_CLE}; {_ADA}).")
    # The boxes in a row of their own, as wide as their labels (a quarter of the page clips "Cross-layer
    # equalization (+cle)" at 1280 px); below, Rounding and AdaRound's numbers, level however their labels wrap
    boxes = st.container(horizontal=True, gap="large")
    out = {"equalize": _flag(boxes, "equalize"), "bias_correction": _flag(boxes, "bias_correction")}
    c1, c2, c3, _ = st.columns(4, vertical_alignment="bottom")
    out["rounding"] = c1.selectbox(TITLES["rounding"], CHOICES["rounding"], key="rounding", bind="query-params",
                                   help=HELP["rounding"], on_change=forget, args=("rounding",))
    problems = []
    if out["rounding"] == "adaround":
        out |= _numbers((c2, c3))
        if calib_size < ADAROUND_BATCH:
            problems.append(f"AdaRound fits each layer on batches of {ADAROUND_BATCH} calibration images, and there "
                            f"are {calib_size}: set 'Calibration images' (Advanced) to {ADAROUND_BATCH} or more")
    return out, problems


def grid_numbers(where) -> dict:
    """The Sweep grid's AdaRound numbers (one value each, as QAT's epochs), shown when the grid rounds by AdaRound."""
    return {name: [value] for name, value in _numbers((where, where), prefix="g_").items()}
