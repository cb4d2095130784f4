"""Part 1 (per-layer sensitivity) and Part 2 (the walk) on a random resnet18, 32 px, a few images, as jobs."""

import csv
import io
import os

import pytest

from qcore.layers.job import layers_config, walk_config
from qcore.layers.rows import LayerRows
from qcore.layers.sensitivity import measure_layers, plan
from qcore.layers.walk import check_budget, check_promote, random_order, walk_specs
from qcore.present.report import csv_text
from qcore.quant.spec import QuantSpec, SpecError
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from qcore.service.worker import run_job

SPEC = QuantSpec("int8", granularity="per-tensor", backend="fx")


@pytest.fixture
def config(fashion_mnist, resnet18_checkpoint):
    return SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), calib_size=16, eval_limit=32,
                       latency_budget_s=0.2,
                       fp32_compiled=False)


def test_plan_counts_builds_and_evaluations():
    assert (plan(21, True, 1000).builds, plan(21, True, 1000).evaluations) == (43, 43)
    assert plan(21, False, 1000).builds == 1 and "21 layers: 1 model build(s)" in plan(21, False, 1000).text()


def test_sensitivity_rows_and_a_resumed_job_measures_only_the_rest(config, one_thread):
    store = Store()
    jid = store.submit_job(layers_config(config, SPEC, accuracy=True, error_images=16, only=("fc", "conv1")), [],
                           kind="layers", total=1)
    calls = []
    real_add = LayerRows.add

    def add_then_stop(self, job_id, row):  # the first row is committed, then the job is cancelled
        real_add(self, job_id, row)
        calls.append(row.layer)
        store.request_cancel(job_id)

    LayerRows.add = add_then_stop
    try:
        run_job(store, store.claim_next_job(os.getpid()))
    finally:
        LayerRows.add = real_add
    job = store.job(jid)
    assert job.state == "cancelled" and calls == ["conv1"]
    assert "2 layers: 5 model build(s) and 5 evaluation(s) of 32 images, about" in job.result["plan"]
    (first,) = LayerRows(store.path).rows(jid)
    store.resume_job(jid)
    run_job(store, store.claim_next_job(os.getpid()))
    job = store.job(jid)
    assert job.state == "done" and job.result["layers"] == 2 and job.result["backend"] == "fx"
    conv1, fc = LayerRows(store.path).rows(jid)
    assert conv1 == first  # kept, not measured again
    assert (conv1.layer, fc.layer, fc.kind, fc.op, fc.params) == ("conv1", "fc", "layer", "Linear 512->10", 5120)
    for r in (conv1, fc):
        assert 30 < r.weight_sqnr_db < 55 and 0 < r.weight_rel_mse < 1e-3  # INT8: about 6 dB a bit
        assert r.output_sqnr_db is not None and 0.9 < r.output_cosine <= 1.0 and r.error_images == 16
        assert 0 <= r.top1_only_float <= 100 and 0 <= r.agreement_only_quant <= 100 and r.eval_images == 32
        assert r.gain_only_float == pytest.approx(r.top1_only_float - job.result["top1_quantized"])
        assert r.loss_only_quant == pytest.approx(job.result["top1_fp32"] - r.top1_only_quant)


def test_without_accuracy_only_the_errors_and_bad_requests_are_refused(config, one_thread):
    sens = measure_layers(config, QuantSpec("int4", mode="weight-only", granularity="per-tensor"),
                          accuracy_columns=False, error_images=8)
    assert len(sens.rows) == 21 and sens.plan.builds == 1 and all(r.top1_only_float is None for r in sens.rows)
    assert all(5 < r.weight_sqnr_db < 30 for r in sens.rows)  # INT4 per-tensor
    with pytest.raises(SpecError, match="no layer 'fc2'; near names: fc"):
        measure_layers(config, SPEC, accuracy_columns=False, only=("fc2",))
    with pytest.raises(ValueError, match="quantizes nothing"):
        layers_config(config, QuantSpec("fp32"))
    with pytest.raises(ValueError, match="steps=0 is not allowed"):
        walk_config(config, SPEC, steps=0)
    with pytest.raises(ValueError, match="minutes=0 is not allowed"):
        check_budget(None, 0)
    with pytest.raises(ValueError, match="order='best' is not allowed; allowed: sensitivity, random"):
        walk_config(config, SPEC, order="best")


def test_walk_specs_and_random_orders():
    names = ["a", "b", "c"]
    assert random_order(names, 1) == random_order(names, 1) and sorted(random_order(names, 2)) == names
    specs = walk_specs(SPEC, ["c", "a", "b"], steps=5)
    assert [s.keep_float for s in specs] == [(), ("c",), ("a", "c")]  # never every layer
    int4 = QuantSpec("int4", mode="weight-only", granularity="per-tensor")
    specs = walk_specs(int4, ["c", "a", "b"], steps=2, promote_to="int8")
    assert [(s.keep_int8, s.keep_float) for s in specs] == [((), ()), (("c",), ()), (("a", "c"), ())]


def test_promoting_to_int8_needs_an_int4_weight_only_spec(config):
    with pytest.raises(ValueError, match="promote_to='int8' is not allowed with INT8 per-tensor .*allowed: fp32"):
        walk_config(config, SPEC, promote_to="int8")
    with pytest.raises(ValueError, match="promote_to='bf16' is not allowed; allowed: fp32, int8"):
        check_promote(SPEC, "bf16")
    with pytest.raises(SpecError, match="drop keep_float and keep_int8 \\(fc\\)"):
        walk_specs(QuantSpec("int4", mode="weight-only", keep_int8=("fc",)), ["a", "fc"], 1, "int8")
    with pytest.raises(ValueError, match="starts from the spec on every layer; drop keep_float and keep_int8"):
        layers_config(config, QuantSpec("int4", mode="weight-only", keep_int8=("fc",)))


def test_a_random_walk_job_stores_each_point_as_a_sweep_row(config, one_thread):
    store = Store()
    jid = store.submit_job(walk_config(config, SPEC, order="random", seed=3, steps=1, ranking_images=16), [],
                           kind="mixed-walk", total=1)
    run_job(store, store.claim_next_job(os.getpid()))
    job = store.job(jid)
    assert job.state == "done", job.error
    order = LayerRows(store.path).walk(jid)["order"]
    import torchvision

    from qcore.backends.fx_int8 import model_quantizers
    from qcore.backends.layer_names import layer_names

    net = torchvision.models.resnet18(num_classes=10)
    acts = [q.name for q in model_quantizers(net) if not q.problem]  # a static INT8 walk may promote these too
    assert len(acts) == 9 and order == random_order(layer_names(net) + acts, 3)
    rows = sorted(store.results(sweep_id=jid), key=lambda r: r.created_at)
    assert [r.spec.keep_float for r in rows] == [(), (), (order[0],)] and all(r.ok for r in rows)
    fewer = 0 if order[0].startswith("act:") else 1  # an activation quantizer kept leaves every layer int8
    assert rows[0].spec.is_reference and rows[2].quantized_layers == rows[1].quantized_layers - fewer
    table = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert [t["keep_float"] for t in table] == ["", "", order[0]]


def test_an_int8_promoting_walk_keeps_layers_in_8_bits_and_says_so_in_each_row(config, one_thread):
    store = Store()
    int4 = QuantSpec("int4", mode="weight-only", granularity="per-tensor")
    jid = store.submit_job(walk_config(config, int4, order="random", seed=3, steps=1, ranking_images=16,
                                       promote_to="int8"), [], kind="mixed-walk", total=1)
    run_job(store, store.claim_next_job(os.getpid()))
    job = store.job(jid)
    assert job.state == "done" and job.result["promote_to"] == "int8", job.error
    order = LayerRows(store.path).walk(jid)["order"]
    rows = sorted(store.results(sweep_id=jid), key=lambda r: r.created_at)
    assert [(r.spec.keep_int8, r.spec.keep_float) for r in rows] == [((), ()), ((), ()), ((order[0],), ())]
    assert all(r.ok for r in rows) and rows[2].quantized_layers == rows[1].quantized_layers  # stored, in 8 bits
    assert rows[1].size_bytes < rows[2].size_bytes < rows[0].size_bytes
    assert all("kept in INT8" in " ".join(r.notes) for r in rows[1:])
    table = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert [(t["keep_int8"], t["keep_float"]) for t in table] == [("", ""), ("", ""), (order[0], "")]


def test_a_sweep_point_with_an_unknown_layer_is_an_error_row_naming_the_near_ones(config, one_thread):
    from qcore.runs.sweep import run_sweep

    base, bad = run_sweep(config, [QuantSpec("int8", backend="fx", keep_float=("layer1.0.conv3",))])
    assert base.ok and bad.status == "error" and bad.top1 is None
    assert "no layer 'layer1.0.conv3'; near names: layer1.0.conv" in bad.error
    int4 = QuantSpec("int4", mode="weight-only", keep_int8=("fc2",))
    _, bad = run_sweep(config, [int4])
    assert bad.status == "error" and "keep_int8: the model has no layer 'fc2'; near names: fc" in bad.error


def test_a_sweep_keeps_a_layer_in_fp32_on_onnx_runtime(config, one_thread):
    pytest.importorskip("onnxruntime")
    from qcore.runs.sweep import run_sweep

    spec = QuantSpec("int8", granularity="per-tensor", backend="ort")
    base, full, kept = run_sweep(config, [spec, spec.replace(keep_float=("fc", "layer4.1.conv2"))])
    assert base.ok and full.ok and kept.ok, (full.error, kept.error)
    assert (full.quantized_layers, kept.quantized_layers) == (21, 19)
    assert kept.row()["keep_float"] == "fc;layer4.1.conv2"
    assert "2 layer(s) left in FP32 (nodes_to_exclude): fc, layer4.1.conv2" in kept.notes
    assert kept.size_bytes > full.size_bytes  # two layers' weights stored in 4 bytes, not 1
