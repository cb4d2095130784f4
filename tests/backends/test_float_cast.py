"""The float backend: FP32, FP16 and BF16 casts of the whole model."""

import pytest
import torch

from qcore.backends import quantize
from qcore.metrics.measure import size_bytes
from qcore.quant.spec import QuantSpec

EXAMPLE = torch.randn(1, 3, 32, 32)


@pytest.mark.parametrize("precision,ratio", [("fp16", 0.5), ("bf16", 0.5), ("fp32", 1.0)])
def test_float_casts(resnet, precision, ratio):
    q = quantize(resnet, QuantSpec(precision), [], EXAMPLE)
    assert (
        next(q.model.parameters()).dtype
        == {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    )
    assert size_bytes(q.artifact) / size_bytes(resnet.state_dict()) == pytest.approx(ratio, abs=0.01)
    with torch.no_grad():
        assert q(EXAMPLE).shape == (1, 10)
