"""The pt2e backend: torchao's PT2E export, X86InductorQuantizer and AOTInductor packages with freezing."""

from pathlib import Path

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, quantize, resolve_backend
from qcore.backends.compiled import PerShape
from qcore.quant.spec import QuantSpec

EXAMPLE = torch.randn(1, 3, 32, 32)


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def _small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


@pytest.mark.slow
def test_pt2e_int8_packages_are_frozen_cached_and_a_bad_one_is_rebuilt(calib, tmp_path, monkeypatch):
    """Real int8 AOTInductor packages per shape, each built frozen: Inductor's freeze pass runs with the flag
    on, so the int8 weights are prepacked into oneDNN's fused convolutions (the speed-up), and the global
    setting is left as it was (AOTInductor applies its options for the build only, and the graph is exported
    before, so no tracer reads the global flag as torch.compile's Dynamo does). A second quantization loads
    the packages (same outputs), and a damaged package is rebuilt instead of failing the run."""
    import zipfile

    import torch._inductor.config as inductor_config
    import torch._inductor.freezing as freezing

    monkeypatch.setenv("QCORE_BUILDS", str(tmp_path / "builds"))  # built here, not loaded from another test's
    seen = []
    real = freezing.freeze
    monkeypatch.setattr(freezing, "freeze", lambda *a, **k: seen.append(inductor_config.freezing) or real(*a, **k))
    before = inductor_config.freezing
    model = _small_cnn()
    spec = QuantSpec("int8", backend="pt2e")
    q = quantize(model, spec, calib, EXAMPLE)
    assert q.backend == "pt2e" and q.kernel == "native" and isinstance(q.model, PerShape)
    assert inductor_config.freezing == before and seen == [True]
    int8 = [t for t in q.artifact.values() if t.dtype == torch.int8]
    assert len(int8) >= 2
    out, out_ex = q(calib[0]), q(EXAMPLE)  # the evaluation batch gets a package of its own (grad mode on here)
    assert inductor_config.freezing == before and seen == [True, True]
    with torch.no_grad():
        assert _rel_err(out, model(calib[0])) < 0.2
        assert torch.equal(q(calib[0][:5]), out[:5])  # a smaller batch runs padded to 16
    assert [(r.cached, tuple(r.meta["shape"])) for r in q.builds] == [(False, (1, 3, 32, 32)), (False, (16, 3, 32, 32))]
    for record in q.builds:  # the generated C++ calls oneDNN's int8 convolution for both convs, no FP32 one
        with zipfile.ZipFile(record.path) as z:
            code = "".join(z.read(n).decode(errors="ignore") for n in z.namelist() if n.endswith(".cpp"))
        assert code.count("_qconv_pointwise_tensor(") == 2 and "_convolution_pointwise(" not in code, record.meta
    q2 = quantize(model, spec, calib, EXAMPLE)  # the same spec again: both packages come from the cache
    with torch.no_grad():
        assert torch.equal(q2(calib[0]), out) and torch.equal(q2(EXAMPLE), out_ex)
    assert [r.cached for r in q2.builds] == [True, True] and len(seen) == 2
    assert q2.builds[1].first_build_seconds == pytest.approx(q.builds[1].first_build_seconds, rel=0.2)
    Path(q.builds[0].path).write_bytes(b"PK\x03\x04 not a package")  # the latency shape's package, damaged
    q3 = quantize(model, spec, calib, EXAMPLE)
    with torch.no_grad():
        assert torch.equal(q3(calib[0]), out) and torch.equal(q3(EXAMPLE), out_ex)
    assert [r.cached for r in q3.builds] == [False, True] and q3.builds[0].rebuilt_because


def test_pt2e_refuses_per_tensor_with_reason():
    with pytest.raises(BackendUnavailable, match="per channel only"):
        resolve_backend(QuantSpec("int8", granularity="per-tensor", backend="pt2e"), "cpu")


def test_compiled_with_freezing_sets_the_flag_only_while_tracing(monkeypatch):
    """bench/peers.py's torch.compile engines: Dynamo reads the global flag while it traces, so the wrapper
    turns it on for the first call per shape only and restores it."""
    import torch._inductor.config as inductor_config

    from qcore.backends.compiled import CompiledWithFreezing

    seen = []
    fn = CompiledWithFreezing(lambda x: seen.append(inductor_config.freezing) or x * 2)
    before = inductor_config.freezing
    assert torch.equal(fn(torch.ones(2)), torch.full((2,), 2.0))
    fn(torch.ones(2))  # the same shape: traced already
    fn(torch.ones(3))  # a new shape: Dynamo would trace again
    assert seen == [True, before, True] and inductor_config.freezing == before


def test_build_pt2e_is_the_backends_graph_before_compiling(calib):
    from qcore.backends.pt2e_int8 import build_pt2e

    model = _small_cnn()
    graph = build_pt2e(model, QuantSpec("int8", calibration="entropy", backend="pt2e"), calib, EXAMPLE)
    observers = [m for m in graph.converted.modules() if "Observer" in type(m).__name__]
    assert not observers  # converted: the observers are gone, quantize/dequantize pairs remain
    targets = {str(n.target) for n in graph.converted.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in t for t in targets) and any("dequantize" in t for t in targets)
    assert sum(t.dtype == torch.int8 for t in graph.artifact.values()) >= 2 and graph.calib_seconds > 0
    with torch.no_grad():
        assert _rel_err(graph.converted(calib[0]), model(calib[0])) < 0.2  # runs uncompiled, close to FP32


@pytest.mark.parametrize("backend", ["pt2e", "xnnpack"])
def test_a_latency_input_larger_than_the_calibration_images_builds(calib, backend):
    """A sweep times at --input-size (224 in the docs) and calibrates on the dataset's images (32x32): the graph is
    exported at the latency input, so its shape guards must not refuse the calibration batches (they did, and every
    such sweep and ``auto``'s probe lost pt2e and xnnpack: "Guard failed: x.size()[2] == 224")."""
    try:
        resolve_backend(QuantSpec("int8", backend=backend), "cpu")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    model = _small_cnn()
    large = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    q = quantize(model, QuantSpec("int8", backend=backend), calib, large)
    with torch.no_grad():
        for x in (large, calib[0]):  # the latency input and an evaluation-sized batch: both run, both near FP32
            assert _rel_err(q(x), model(x)) < 0.1
