"""The Layers page's weight histogram through AppTest: choosing a layer (the select box a heat-map click sets)
draws its weights with the clipping range the spec's weight settings choose, the library's own
(:func:`qcore.layers.clipping.weight_ranges` on the checkpoint's weight); per group it opens on the widest group
and says how many there are. A random-weights resnet18 checkpoint; no measuring (rows are inserted)."""

from __future__ import annotations

import json

import pytest
import torch
from streamlit.testing.v1 import AppTest

from qcore.layers.clipping import weight_ranges
from qcore.layers.job import layers_config
from qcore.layers.row import LayerRow
from qcore.layers.rows import LayerRows
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from tests.test_app import APP
from ui.layers_view import clicked_layer


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _job(ckpt, spec: QuantSpec) -> str:
    store = Store()
    config = layers_config(SweepConfig(model="resnet18", weights=str(ckpt), eval_limit=100), spec, accuracy=False)
    jid = store.submit_job(config, [], kind="layers", total=2)
    rows = LayerRows(store.path)
    rows.add(jid, LayerRow("conv1", 0, "Conv2d 7x7 3->64", 9408, 40.1, 1e-4, 30.0, 1e-3, 0.999, eval_images=100,
                           error_images=64))
    rows.add(jid, LayerRow("layer1.0.conv1", 1, "Conv2d 3x3 64->64", 36864, 38.0, 2e-4, 25.0, 3e-3, 0.99,
                           eval_images=100, error_images=64))
    store.update_job(jid, state="done", done=2, result={"plan": "2 layers", "top1_fp32": 10.0, "top1_quantized": 9.0,
                                                        "eval_images": 100, "backend": "fx"})
    return jid


def _page(jid: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/layers.py")
    at.query_params["job"] = jid
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _drawn_range(at: AppTest) -> tuple[float, float]:
    fig = json.loads(at.get("plotly_chart")[-1].proto.spec)
    lines = [t for t in fig["data"] if t.get("yaxis") == "y2"]
    return lines[0]["x"][0], lines[1]["x"][0]


def _weight(ckpt, name: str) -> torch.Tensor:
    return torch.load(ckpt, weights_only=True)[f"{name}.weight"]


def _folded_weight(ckpt, name: str) -> torch.Tensor:
    """The weight the histogram opens on: BatchNorm folded in (torch's own conv-bn fusion)."""
    import torchvision
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(torch.load(ckpt, weights_only=True))
    conv, bn = net.get_submodule(name), net.get_submodule(name.replace("conv", "bn"))
    return fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight,
                                bn.bias)[0].detach()


def test_int8_per_tensor_draws_the_observers_range_for_the_chosen_layer(resnet18_checkpoint, fashion_mnist):
    spec = QuantSpec("int8", granularity="per-tensor", mode="static")
    jid = _job(resnet18_checkpoint, spec)
    at = _page(jid)
    assert [w.value for w in at.warning] == [] and not at.error
    at.selectbox(key=f"layer-{jid}").set_value("layer1.0.conv1").run()
    import torchvision

    from qcore.learn.source import fold_batchnorm

    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(torch.load(resnet18_checkpoint, weights_only=True))
    folded = weight_ranges(fold_batchnorm(net.eval())[0].get_submodule("layer1.0.conv1").weight, spec)
    # it opens on the weight as the kernels hold it (BatchNorm folded), as the table's weight SQNR and Learn do
    assert at.toggle(key=f"hist-{jid}-fold").value is True
    assert folded.count == 1 and _drawn_range(at) == pytest.approx((folded.lo[0], folded.hi[0]))
    text = next(m.value for m in at.markdown if m.value.startswith("Clipping range of the whole tensor"))
    assert f"[{folded.lo[0]:.4g}, {folded.hi[0]:.4g}]" in text and "codes -128..127" in text
    at.toggle(key=f"hist-{jid}-fold").set_value(False).run()  # the layer's own weight
    r = weight_ranges(_weight(resnet18_checkpoint, "layer1.0.conv1"), spec)
    assert _drawn_range(at) == pytest.approx((r.lo[0], r.hi[0])) and folded.hi[0] != r.hi[0]


def test_int4_per_group_opens_on_the_widest_group_and_moves_to_another(resnet18_checkpoint, fashion_mnist):
    spec = QuantSpec("int4", granularity="per-group", group_size=64, mode="weight-only", scheme="symmetric")
    jid = _job(resnet18_checkpoint, spec)
    at = _page(jid)
    r = weight_ranges(_folded_weight(resnet18_checkpoint, "conv1"), spec)  # 64 channels of 147 weights: 3 groups each
    assert r.count == 64 * 3
    row = at.number_input(key=f"hist-{jid}-row-conv1-group")
    assert row.value == r.widest and _drawn_range(at) == pytest.approx((r.lo[r.widest], r.hi[r.widest]))
    assert any(f"**{r.count:,} groups** of 64 weights" in m.value for m in at.markdown)
    row.set_value(5).run()
    assert _drawn_range(at) == pytest.approx((r.lo[5], r.hi[5]))
    assert any(m.value.startswith("Clipping range of group 2 of channel 1:") for m in at.markdown)


def test_a_heat_map_click_names_its_layer():
    class Event:
        selection = {"points": [{"x": "weight SQNR dB", "y": "fc (Linear 512->10)", "customdata": "fc"}]}

    Event.selection = type("S", (), {"points": Event.selection["points"]})
    assert clicked_layer(Event) == "fc"
    Event.selection.points = [{"y": "layer1.0.conv1 (Conv2d 3x3 64->64)"}]
    assert clicked_layer(Event) == "layer1.0.conv1"
    Event.selection.points = []
    assert clicked_layer(Event) is None and clicked_layer(None) is None
