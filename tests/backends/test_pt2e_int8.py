"""The pt2e backend: torchao's PT2E export, X86InductorQuantizer and Inductor with freezing."""

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, quantize, resolve_backend
from qcore.backends.pt2e_int8 import ChannelsLastInput
from qcore.spec import QuantSpec

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


def test_pt2e_int8_on_a_small_cnn(calib):
    model = _small_cnn()
    q = quantize(model, QuantSpec("int8", backend="pt2e"), calib, EXAMPLE)
    assert q.backend == "pt2e" and q.kernel == "native"
    int8 = [t for t in q.artifact.values() if t.dtype == torch.int8]
    assert len(int8) >= 2
    with torch.no_grad():
        assert _rel_err(q(calib[0]), model(calib[0])) < 0.2
        assert q(torch.randn(5, 3, 32, 32)).shape == (5, 10)  # the batch dimension is dynamic
        assert q(torch.randn(2, 3, 48, 48)).shape == (2, 10)  # so are H and W (latency 224, evaluation 32)
    assert isinstance(q.model, ChannelsLastInput)


def test_pt2e_refuses_per_tensor_with_reason():
    with pytest.raises(BackendUnavailable, match="per channel only"):
        resolve_backend(QuantSpec("int8", granularity="per-tensor", backend="pt2e"), "cpu")


def test_freezing_is_an_option_of_each_compile_not_a_process_setting(calib, monkeypatch):
    """Every compile of the quantized graph, recompiles for new input sizes included, is frozen (the int8
    weights folded into oneDNN's kernels: the speed-up), and Inductor's global setting is left as it was."""
    import torch._inductor.compile_fx as compile_fx
    import torch._inductor.config as inductor_config

    frozen = []
    real = compile_fx.fw_compiler_freezing
    monkeypatch.setattr(compile_fx, "fw_compiler_freezing", lambda *a, **k: frozen.append(1) or real(*a, **k))
    before = inductor_config.freezing
    q = quantize(_small_cnn(), QuantSpec("int8", backend="pt2e"), calib, EXAMPLE)
    assert inductor_config.freezing == before and len(frozen) == 1
    with torch.no_grad():
        q(torch.randn(5, 3, 32, 32))  # a new batch size: Dynamo compiles again
    assert inductor_config.freezing == before and len(frozen) == 2
    with torch.no_grad():
        q(torch.randn(5, 3, 32, 32))  # the same shape: no compile, the set lookup only
    assert len(frozen) == 2


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
