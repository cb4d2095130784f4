"""Every value of every select box, radio and pill of the Explore and Sweep pages, chosen on the page and
opened from a URL: the page renders, with no exception and no error but the one that value calls for (an
impossible spec says why, a missing upload asks for one). No job runs: these are renders (under a second each).

The settings widgets are shared (``ui/settings.py``): the model box, whose 80 values take longest, is walked on
Explore by choosing and on Sweep from the URL; every other box on both pages both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from qcore.data.registry import list_datasets
from qcore.quant.spec import CHOICES, GROUP_SIZES
from ui.common import dataset_label, label_of
from ui.grid_settings import GRID_FIELDS
from ui.settings import UPLOAD, UPLOAD_LABEL, WEIGHTS

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = {"explore": "pages/explore.py", "sweep": "pages/sweep.py"}
IMPOSSIBLE = {"explore": "This spec is impossible: ", "sweep": "no combination of these values is a valid spec"}


def _models() -> list[str]:
    from qcore.nets.models import list_models

    return list_models()


def _too_small(model: str) -> bool:
    from qcore.nets.models import check_input_size

    try:
        check_input_size(model, 32)
    except ValueError:
        return True
    return False


def _gpu() -> bool:
    from qcore.env.hardware import detect

    return bool(detect().gpu)


# (page, widget key, kind, values, how a value is written in the URL, URL parameters that set its context)
CONFIG = [
    ("dataset", "selectbox", [*list_datasets(), UPLOAD], lambda d: UPLOAD_LABEL if d == UPLOAD else dataset_label(d)),
    ("weights", "radio", list(WEIGHTS), str),
    ("device", "selectbox", list(CHOICES["device"]), str),
    ("compiled", "checkbox", [True, False], lambda v: str(v).lower()),
    ("probe", "checkbox", [True, False], lambda v: str(v).lower()),
]
EXPLORE_SPEC = [
    ("precision", "selectbox", list(CHOICES["precision"]), label_of, {}),
    ("granularity", "selectbox", list(CHOICES["granularity"]), str, {}),
    ("group", "selectbox", list(GROUP_SIZES), str, {"precision": "INT4", "granularity": "per-group"}),
    ("calibration", "selectbox", list(CHOICES["calibration"]), label_of, {}),
    ("scheme", "selectbox", list(CHOICES["scheme"]), str, {}),
    ("mode", "selectbox", list(CHOICES["mode"]), str, {}),
    ("backend", "selectbox", list(CHOICES["backend"]), str, {}),
    ("rounding", "selectbox", list(CHOICES["rounding"]), str, {}),  # (with the default INT8 static spec)
    ("equalize", "checkbox", [True, False], lambda v: "on" if v else "off", {}),  # (ui/ptq_settings.py)
    ("bias_correction", "checkbox", [True, False], lambda v: "on" if v else "off", {}),
]


def _cases() -> list:
    cases = []
    for how in ("chosen", "url"):
        for page in PAGES:
            for key, kind, values, url in CONFIG:
                cases += [(page, how, key, kind, v, url(v), {}) for v in values]
        for key, kind, values, url, context in EXPLORE_SPEC:
            cases += [("explore", how, key, kind, v, url(v), context) for v in values]
        for name, options, _ in GRID_FIELDS:
            cases += [("sweep", how, f"g_{name}", "pills", v, label_of(v), {}) for v in options]
    cases += [("sweep", "chosen", "sweep_source", "segmented_control", v, None, {}) for v in ("grid", "list")]
    models = _models()
    cases += [("explore", "chosen", "model", "selectbox", m, m, {}) for m in models]
    cases += [("sweep", "url", "model", "selectbox", m, m, {}) for m in models]
    return [pytest.param(*c, id=f"{c[0]}-{c[1]}-{c[2]}={c[4]}") for c in cases]


def expected_error(page: str, how: str, key: str, value) -> str | None:
    """The one error a value calls for (a substring of it), or None when the page must show none."""
    impossible = IMPOSSIBLE[page]
    if key == "model":
        return f"{value} cannot take 32x32" if _too_small(value) else None
    if key == "dataset" and value == UPLOAD:
        return "choose a dataset, or upload a zip of class folders"
    if key == "weights" and value == "upload":
        return "upload a checkpoint, or choose other weights"
    if key == "device" and value == "cuda" and not _gpu():
        return "device 'cuda' was chosen but this machine has no CUDA GPU"
    if key == "sweep_source" and value == "list":
        return "the spec list is empty"
    if key in ("granularity", "g_granularity") and value == "per-group":  # static INT8 has no per-group scales
        if page == "explore":  # a link that names no mode opens on one that allows it (weight-only)
            return None if how == "url" else impossible + "granularity='per-group' is not allowed in static INT8"
        return impossible
    if key in ("backend", "g_backend") and value in ("torchao", "float", "weight-only"):
        return impossible + (f"backend={value!r} does not run mode='static'" if page == "explore" else "")
    return None


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


@pytest.mark.parametrize("page, how, key, kind, value, url_value, context", _cases())
def test_every_value_renders(page, how, key, kind, value, url_value, context):
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page(PAGES[page])
    at.query_params.update(context)
    if how == "url":
        at.query_params[key] = url_value
    at.run()
    if how == "chosen":
        widget = getattr(at, kind)(key=key)
        if kind == "selectbox":
            widget.select(value)
        elif kind == "pills":
            widget.set_value([value])
        else:
            widget.set_value(value)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    widget = getattr(at, kind)(key=key)
    assert widget.value == ([value] if kind == "pills" else value)  # the value asked for is the one shown
    errors = [e.value for e in at.error]
    want = expected_error(page, how, key, value)
    if want is None:
        assert errors == []
    else:
        assert len(errors) == 1 and want in errors[0], errors
