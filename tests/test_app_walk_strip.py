"""The per-layer precision strip under the Pareto chart: for a mixed-precision walk (one spec with and without
layers kept in FP32), one row per point in walk order, one cell per Conv/Linear layer of the model in model order,
FP32 exactly where the row's keep_float says. Rows are inserted (no measuring)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from qcore.backends.layer_names import model_layer_names
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from tests.test_app import APP
from ui.layers_view import strip_cells

LAYERS = model_layer_names("resnet18")
SPEC = QuantSpec("int8", granularity="per-tensor", mode="static")
KEPT = [(), ("fc",), ("fc", "layer4.1.conv2")]


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _row(spec: QuantSpec, top1: float, ms: float, mb: float, jid: str, t: float) -> Result:
    return Result(spec, "resnet18", "fashion-mnist", backend="fx", kernel="x86", top1=top1, top1_delta=top1 - 91.0,
                  agreement=95.0, latency_ms_p50=ms, latency_ms_p90=ms, fp32_latency_ms_p50=10.0, speedup=10.0 / ms,
                  size_bytes=int(mb * 1e6), size_ratio=mb / 44, sweep_id=jid, created_at=t)


def _walk(jid: str = "") -> list[Result]:
    points = [_row(SPEC.replace(keep_float=k), 88.0 + i, 4.0 + i, 11.0 + i, jid, 2.0 + i) for i, k in enumerate(KEPT)]
    return [_row(FP32, 91.0, 10.0, 44.0, jid, 1.0), *points]


def test_strip_cells_follow_keep_float_in_model_order():
    cells = strip_cells(_walk()[1:], LAYERS)
    assert [len(row) for row in cells] == [21, 21, 21] and LAYERS[0] == "conv1" and LAYERS[-1] == "fc"
    assert cells[0] == ["INT8"] * 21
    assert cells[1] == ["INT8"] * 20 + ["FP32"]
    assert [LAYERS[j] for j, c in enumerate(cells[2]) if c == "FP32"] == ["layer4.1.conv2", "fc"]


def test_a_walk_promoting_to_int8_under_int4_is_one_walk_and_its_cells_say_int8():
    from ui.layers_view import precision_strip, walk_groups

    int4 = QuantSpec("int4", granularity="per-tensor", mode="weight-only")
    walk = [_row(int4.replace(keep_int8=k), 80.0 + i, 9.0, 6.0 + i, "", 2.0 + i) for i, k in enumerate(KEPT)]
    groups = walk_groups([_walk()[0], *walk])
    assert len(groups) == 1 and [len(r.spec.keep_int8) for r in groups[0]] == [0, 1, 2]
    cells = strip_cells(groups[0], LAYERS)
    assert cells[0] == ["INT4"] * 21 and cells[1] == ["INT4"] * 20 + ["INT8"]
    fig = precision_strip(groups[0], LAYERS, {"INT4": "#111111", "INT8": "#222222"})
    assert fig.data[0].z[2][-1] == 0.5 and fig.data[0].z[2][0] == 1.0  # INT8 cells sit between FP32 and INT4
    assert list(fig.data[0].y) == ["0 in FP32 · 80.00%", "0 in FP32, 1 in INT8 · 81.00%",
                                   "0 in FP32, 2 in INT8 · 82.00%"]
    assert "<b>INT8</b>" in fig.layout.title.text


def test_the_sweep_page_draws_one_strip_row_per_walk_point():
    store = Store()
    specs = [SPEC.replace(keep_float=k).to_dict() for k in KEPT]
    jid = store.submit_job(SweepConfig(model="resnet18").to_dict(), specs)
    for r in _walk(jid):
        store.add_result(r)
    store.update_job(jid, state="done", done=4)
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/sweep.py")
    at.query_params["job"] = jid
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (strip,) = [f for f in figs if f["data"] and f["data"][0]["type"] == "heatmap"]
    heat = strip["data"][0]
    assert heat["x"] == LAYERS
    kept_cols = [[heat["x"][j] for j, v in enumerate(row) if v == 0] for row in heat["z"]]
    assert kept_cols == [[], ["fc"], ["layer4.1.conv2", "fc"]]
    assert heat["y"][2].startswith("2 in FP32 · 90.00%")
    pareto = next(f for f in figs if any(t.get("name", "").startswith("walk: ") for t in f["data"]))
    walk_line = next(t for t in pareto["data"] if t.get("name", "").startswith("walk: "))
    assert len(walk_line["x"]) == 3  # the strip's rows are the line's points, in the same order
