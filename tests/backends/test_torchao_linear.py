"""The torchao backend: torchao's quantize_ on Linear layers (INT8 dynamic, INT8/INT4 weight-only)."""

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, quantize, resolve_backend
from qcore.metrics.measure import size_bytes
from qcore.nets import models
from qcore.quant.spec import QuantSpec


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 10)).eval()


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec("int8", mode="dynamic", backend="torchao"),
        QuantSpec("int8", mode="dynamic", scheme="symmetric"),  # auto: fx refuses symmetric, torchao runs it
        QuantSpec("int8", mode="weight-only", scheme="symmetric", backend="torchao"),
        QuantSpec("int8", mode="weight-only", scheme="symmetric", granularity="per-group", backend="torchao"),
    ],
    ids=lambda s: s.label(),
)
def test_torchao_linear(spec):
    model, x = _mlp(), torch.randn(4, 64)
    q = quantize(model, spec, [], x)
    assert q.backend == "torchao" and q.quantized_layers == 2 and q.kernel == "native"
    assert size_bytes(q.artifact) < 0.4 * size_bytes(model.state_dict())
    with torch.no_grad():
        assert _rel_err(q(x), model(x)) < 0.05


def test_torchao_int4_needs_cuda():
    spec = QuantSpec("int4", mode="weight-only", granularity="per-group", backend="torchao")
    with pytest.raises(BackendUnavailable, match="CUDA only"):
        resolve_backend(spec, "cpu")


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return models.build_model("vit_b_32", 10, 32).eval()


@pytest.mark.parametrize(
    "spec",
    [QuantSpec("int8", mode="weight-only", scheme="symmetric", backend="torchao"),
     QuantSpec("int8", mode="dynamic", backend="torchao")],
    ids=["weight-only", "dynamic"],
)
def test_torchao_runs_a_vit_and_leaves_the_attention_output_projection_fp32(vit, spec):
    # nn.MultiheadAttention transposes out_proj.weight itself; torchao's Int8Tensor has no aten.t, so a swapped
    # out_proj failed with "Int8Tensor dispatch: attempting to run unimplemented operator ... aten.t"
    x = torch.randn(2, 3, 32, 32)
    q = quantize(vit, spec, [x], x[:1])
    with torch.inference_mode():
        out = q(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # 12 blocks x 2 MLP Linear + the head; the 12 out_proj and the patch conv stay FP32
    assert q.kernel == "native" and (q.quantized_layers, q.total_layers) == (25, 38)
    assert any("12 nn.MultiheadAttention output projection(s) stay FP32" in n for n in q.notes)
    assert type(q.model.encoder.layers[0].self_attention.out_proj.weight) is torch.nn.Parameter
    assert type(q.model.encoder.layers[0].mlp[0].weight).__module__.startswith("torchao")
