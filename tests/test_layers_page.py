"""The Layers page through AppTest: a stored sensitivity job shows its table and heat map, and "keep in FP32 and
re-run" queues that spec as a sweep point with the layer in keep_float (no measuring here: rows are inserted)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from qcore.layers.job import layers_config
from qcore.layers.row import LayerRow
from qcore.layers.rows import LayerRows
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from tests.apptest import open_page
from tests.test_app import APP

SPEC = QuantSpec("int8", granularity="per-tensor")


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _stored_job() -> str:
    store = Store()
    config = layers_config(SweepConfig(model="resnet18", eval_limit=100), SPEC, accuracy=True)
    jid = store.submit_job(config, [], kind="layers", total=5)
    rows = LayerRows(store.path)
    rows.add(jid, LayerRow("conv1", 0, "Conv2d 7x7 3->64", 9408, 40.1, 1e-4, 30.0, 1e-3, 0.999, 90.0, 99.0, 89.0,
                           98.0, 0.5, 1.0, 100, 64))
    rows.add(jid, LayerRow("fc", 20, "Linear 512->10", 5120, 48.0, 2e-5, 20.0, 1e-2, 0.99, 91.0, 99.5, 90.5, 99.0,
                           1.5, -0.5, 100, 64))
    store.update_job(jid, state="done", done=5, result={"plan": "2 layers: 5 model build(s)", "top1_fp32": 91.0,
                                                        "top1_quantized": 89.5, "eval_images": 100, "backend": "fx"})
    return jid


def test_a_stored_job_shows_table_heatmap_and_queues_a_keep_float_point():
    jid = _stored_job()
    at = open_page("pages/layers.py", timeout=180, job=jid)
    assert at.title[0].value == "Layers: where the accuracy goes"
    table = at.dataframe[0].value
    assert list(table["layer"]) == ["conv1", "fc"] and list(table["gain pts (only this FP32)"]) == [0.5, 1.5]
    assert any("89.50%" in m.value for m in at.markdown)
    at.selectbox(key=f"layer-{jid}").set_value("fc")
    at.button(key=f"keep-{jid}").click()
    at.run()
    queued = [j for j in Store().jobs() if j.kind == "sweep"]
    assert len(queued) == 1 and queued[0].specs == [SPEC.replace(keep_float=("fc",)).to_dict()]


def test_without_a_job_the_page_says_what_to_do():
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("pages/layers.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Measure every layer" in i.value for i in at.info)


def test_activation_rows_show_their_kind_and_can_be_kept_but_not_the_input():
    from qcore.layers.row import DEFAULT_METRIC

    jid = _stored_job()
    rows = LayerRows(Store().path)
    rows.add(jid, LayerRow("act:input", 21, "input", 0, None, None, 45.0, 3e-5, 1.0, eval_images=100,
                           error_images=64, kind="activation", cannot_keep="the input's quantizer is the int8 input"))
    rows.add(jid, LayerRow("act:layer1.0.relu", 22, "add + ReLU", 0, None, None, 25.0, 3e-3, 0.99, 89.6, 99.0,
                           90.0, 99.0, 0.1, 1.0, 100, 64, kind="activation"))
    at = open_page("pages/layers.py", timeout=180, job=jid)
    table = at.dataframe[0].value
    assert list(table["kind"]) == ["layer", "layer", "activation", "activation"]
    assert list(table["op"])[2:] == ["input", "add + ReLU"] and table["weight SQNR dB"].isna().tolist()[2:] == [1, 1]
    assert at.selectbox(key=f"metric-{jid}").value == DEFAULT_METRIC  # the walk's default ranking
    at.selectbox(key=f"layer-{jid}").set_value("act:input").run()
    assert at.button(key=f"keep-{jid}").disabled  # no spec can keep the input's quantizer
    at.selectbox(key=f"layer-{jid}").set_value("act:layer1.0.relu").run()
    assert any("is an activation quantizer (add + ReLU): no weight to draw" in c.value for c in at.caption)
    at.button(key=f"keep-{jid}").click().run()
    queued = [j for j in Store().jobs() if j.kind == "sweep"]
    assert queued[0].specs == [SPEC.replace(keep_float=("act:layer1.0.relu",)).to_dict()]


def test_the_measurements_notes_are_shown_as_text():
    jid = _stored_job()
    store = Store()
    result = {**store.job(jid).result, "note": "1 activation quantizer(s) could not be kept in FP32 on fx "
              "(act:features.1.block.1.scale_activation: torch.ao runs them on int8 anyway); [x](http://a) *b*"}
    store.update_job(jid, result=result)
    at = open_page("pages/layers.py", timeout=180, job=jid)
    notes = [c.value for c in at.caption if c.value.startswith("Notes: ")]
    assert len(notes) == 1 and "could not be kept in FP32 on fx" in notes[0]
    assert "[x](http://a)" not in notes[0] and "\\[x\\]" in notes[0]  # escaped: shown as text, never as a link
