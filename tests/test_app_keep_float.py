"""The "Layers kept in FP32" field of Explore and Sweep through AppTest: the model's layers in model order, the URL
value ``a;b`` read and written, an unknown name refused with its near names, a backend that cannot keep layers
refused with the backends' reason, and the specs submitted carrying ``keep_float`` (no job runs)."""

from __future__ import annotations

import pytest

from qcore.backends.layer_names import model_act_quantizers, model_layer_names
from qcore.quant.spec import QuantSpec
from tests.apptest import APP  # noqa: F401
from tests.apptest import click as _click
from tests.apptest import errors as _errors
from tests.apptest import open_page as _app

MOBILE = model_layer_names("mobilenet_v3_small")  # the pages' default model
_QUANTIZERS = model_act_quantizers("mobilenet_v3_small")
ACTS = [q.name for q in _QUANTIZERS if not q.problem]  # the input's quantizer cannot be kept: not offered
_OPS = {q.name: q.op for q in _QUANTIZERS}


def _label(name: str) -> str:
    return f"{name} ({_OPS[name]})" if name in _OPS else name


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")








def _jobs():
    from qcore.runs.store import Store

    return Store().jobs()


def test_explore_reads_the_link_writes_the_url_and_runs_the_spec_with_the_layers_kept():
    at = _app("pages/explore.py", keep_float="classifier.3;features.0.0")
    field = at.multiselect(key="keep_float")
    # the layers in model order, then (a static INT8 spec) the activation quantizers a spec can keep
    assert field.options[: len(MOBILE)] == [_label(n) for n in MOBILE] and field.value == ["features.0.0",
                                                                                          "classifier.3"]
    assert field.options[len(MOBILE):] == [_label(n) for n in ACTS] and len(ACTS) == 45
    assert not _errors(at)
    field.set_value(["features.0.0", "features.1.block.0.0"]).run()
    assert at.query_params["keep_float"] == "features.0.0;features.1.block.0.0"
    _click(at, "Run")
    (job,) = _jobs()
    assert QuantSpec.from_dict(job.specs[0]).keep_float == ("features.0.0", "features.1.block.0.0")
    assert "+fp32(2 layers #" in QuantSpec.from_dict(job.specs[0]).label()
    at.multiselect(key="keep_float").set_value([]).run()
    assert "keep_float" not in at.query_params


def test_explore_refuses_an_unknown_name_with_the_near_ones_and_a_backend_that_cannot():
    at = _app("pages/explore.py", keep_float="features.0.O")
    (err,) = _errors(at)
    assert "the model has no layer 'features.0.O'; near names: features.0.0" in err
    assert next(b for b in at.button if b.label == "Run").disabled
    at.multiselect(key="keep_float").set_value(["classifier.3"]).run()  # a new choice clears it
    assert not _errors(at)
    at = _app("pages/explore.py", keep_float="features.0.O")
    at.button(key="keep_float-drop").click().run()  # or leaving it out
    assert not _errors(at) and "keep_float" not in at.query_params
    at = _app("pages/explore.py", backend="xnnpack", keep_float="classifier.3")
    assert at.multiselect(key="keep_float").disabled
    assert any("the xnnpack backend cannot keep layers in FP32 (keep_float)" in e for e in _errors(at))
    assert next(b for b in at.button if b.label == "Run").disabled
    at = _app("pages/explore.py", precision="FP16")  # a float cast: no field
    assert not [m for m in at.multiselect if m.key == "keep_float"]


def test_sweep_keeps_the_layers_in_every_quantized_spec_of_the_grid_and_skips_backends_that_cannot():
    at = _app("pages/sweep.py", keep_float="classifier.3", g_backend=["auto", "xnnpack"])
    assert at.multiselect(key="keep_float").value == ["classifier.3"] and not _errors(at)
    assert any("skipped as impossible" in m.value for m in at.markdown)
    _click(at, "Run sweep")
    (job,) = _jobs()
    specs = [QuantSpec.from_dict(d) for d in job.specs]
    quantized = [s for s in specs if not s.is_float]
    assert quantized and all(s.keep_float == ("classifier.3",) and s.backend == "auto" for s in quantized)
    assert all(s.keep_float == () for s in specs if s.is_float)
    at = _app("pages/sweep.py", keep_float="classifier.3", g_backend="xnnpack")
    assert at.multiselect(key="keep_float").disabled
    assert any("the xnnpack backend cannot keep layers in FP32" in e for e in _errors(at))


def test_explore_keeps_an_activation_quantizer_for_a_static_int8_spec_only():
    at = _app("pages/explore.py", keep_float="act:features.3.add")
    assert at.multiselect(key="keep_float").value == ["act:features.3.add"] and not _errors(at)
    _click(at, "Run")
    (job,) = _jobs()
    assert QuantSpec.from_dict(job.specs[0]).keep_float == ("act:features.3.add",)
    at = _app("pages/explore.py", backend="ort", keep_float="act:features.3.add")
    assert any("the ort backend cannot keep an activation quantizer in FP32 (act:features.3.add)" in e
               for e in _errors(at))
    at = _app("pages/explore.py", precision="INT4", mode="weight-only", keep_float="act:features.3.add")
    assert "act:features.3.add" not in at.multiselect(key="keep_float").options
    assert any("act:features.3.add is an activation quantizer of mobilenet_v3_small, which only a static INT8" in e
               for e in _errors(at))


def test_sweep_says_before_run_which_specs_a_named_backend_cannot_run_on_this_device():
    """TensorRT named on a machine without a GPU: Run would skip its specs; the page says so first, with the reason
    and the count (the CPU-only backends on a GPU sweep are the same case)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    at = _app("pages/sweep.py", g_backend="tensorrt", g_scheme="symmetric", device=device)
    warnings = [w.value for w in at.warning if "will be skipped" in w.value]
    if device == "cpu":
        assert warnings == ["2 specs on tensorrt will be skipped on cpu: the tensorrt backend builds NVIDIA TensorRT "
                            "engines, which run on a CUDA GPU only; device='cpu' (allowed: cuda)"], warnings
        cost = [c.value for c in at.caption if c.value.startswith("**This sweep takes")]
        assert cost and "(6.0 s of timing" in cost[0] and "2,000 images once" in cost[0], cost  # the baseline alone
    at = _app("pages/sweep.py", g_backend="fx", device="cpu")
    assert not [w for w in at.warning if "will be skipped" in w.value]
