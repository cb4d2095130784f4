"""torchao's Linear backend on a transformer (found by bench/zoo.py)."""

import pytest
import torch

from qcore import models
from qcore.backends import quantize
from qcore.spec import QuantSpec


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
