"""The torchao backend: torchao's quantize_ on Linear layers (INT8 dynamic, INT8/INT4 weight-only)."""

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, quantize, resolve_backend
from qcore.measure import size_bytes
from qcore.spec import QuantSpec


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
