"""What backend="auto" runs a spec on, and why: the default order, this machine's measurements, refusals."""

import json

import pytest

from qcore.backends import BackendUnavailable, resolve
from qcore.backends import auto as auto_policy
from qcore.env.paths import data_home
from qcore.quant.spec import QuantSpec

INT8 = QuantSpec("int8")  # static, per-channel, asymmetric, min-max: what fx and pt2e both run
PER_TENSOR = QuantSpec("int8", granularity="per-tensor")  # pt2e cannot: per-channel weights only


def test_default_order_and_its_reason():
    choice = resolve(INT8, "cpu", model="resnet18", batch_size=1)
    first = auto_policy.ORDER["static"][0]
    assert choice.backend.name == first
    assert choice.why.startswith(f"auto chose {first} (qcore's default order for static: ")
    assert resolve(QuantSpec("int8", backend="pt2e"), "cpu").why == ""  # asked for by name: no choice made


def test_measurements_on_this_machine_rank_the_backends():
    auto_policy.record_measurement("static", "resnet18", 1, 224, {"fx": 19.9, "pt2e": 16.3}, "test")
    auto_policy.record_measurement("static", "resnet18", 32, 224, {"fx": 565.0, "pt2e": 419.0}, "test")
    order, basis = auto_policy.ranking("static", "resnet18", 1)
    assert order == ["pt2e", "fx"] and "pt2e 1.00x, fx 1.22x" in basis
    order, basis = auto_policy.ranking("static", "mobilenet_v2", 7)  # no point for it: all points count
    assert order == ["pt2e", "fx"] and "fx 1.28x" in basis  # the docstring's example: sqrt(1.221 * 1.348)
    choice = resolve(INT8, "cpu", model="resnet18", batch_size=1)
    assert choice.backend.name == "pt2e" and "measured on this machine" in choice.why
    choice = resolve(PER_TENSOR, "cpu", model="resnet18", batch_size=1)
    assert choice.backend.name == "fx" and "pt2e cannot: X86InductorQuantizer quantizes weights per channel" in (
        choice.why
    )
    auto_policy.record_measurement("static", "resnet18", 1, 224, {"fx": 10.0, "pt2e": 16.3}, "test again")
    assert auto_policy.ranking("static", "resnet18", 1)[0] == ["fx", "pt2e"]  # the newer point replaces the old
    assert len(auto_policy.load_measured()) == 2


def test_a_gpus_measurements_never_rank_the_cpus_backends():
    auto_policy.record_measurement("dynamic", "vit_b_16", 32, 224, {"fx": 900.0, "torchao": 1000.0}, "cpu run")
    auto_policy.record_measurement("dynamic", "vit_b_16", 32, 224, {"torchao": 21.6}, "gpu run", device="cuda")
    assert auto_policy.ranking("dynamic", "vit_b_16", 32)[0] == ["fx", "torchao"]  # the CPU's own, kept
    assert auto_policy.ranking("dynamic", "vit_b_16", 32, device="cuda")[0] == ["torchao"]
    assert auto_policy.measured_point("dynamic", "vit_b_16", 32, 224, device="cuda")["p50_ms"] == {"torchao": 21.6}
    assert auto_policy.measured_point("dynamic", "vit_b_16", 32, 224)["source"] == "cpu run"
    assert len(auto_policy.load_measured()) == 2


def test_measurements_of_another_machine_are_ignored():
    auto_policy.record_measurement("static", "resnet18", 1, 224, {"fx": 30.0, "pt2e": 10.0}, "test")
    path = data_home() / auto_policy.MEASURED_FILE
    body = json.loads(path.read_text())
    body["machine"]["torch"] = "0.0"
    path.write_text(json.dumps(body))
    assert auto_policy.load_measured() == []
    path.write_text("{broken")
    assert auto_policy.load_measured() == []
    assert resolve(INT8, "cpu", model="resnet18", batch_size=1).backend.name == auto_policy.ORDER["static"][0]


def test_bad_measurements_are_refused():
    with pytest.raises(ValueError, match="mode='fast' is not allowed"):
        auto_policy.record_measurement("fast", "resnet18", 1, 224, {"fx": 1.0}, "test")
    with pytest.raises(ValueError, match="no finite latency"):
        auto_policy.record_measurement("static", "resnet18", 1, 224, {"fx": float("nan")}, "test")


def test_nothing_runs_it_names_every_reason():
    with pytest.raises(BackendUnavailable) as info:
        resolve(INT8, "cuda")
    assert "no CUDA kernel for int8 convolutions" in str(info.value)
