import io
import json

import torch

from qcore.metrics.artifact import flatten, load_quantized, metadata, to_bytes
from qcore.metrics.measure import size_bytes


def _per_channel():
    w = torch.randn(64, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    scales = w.abs().amax(dim=(1, 2, 3)) / 127
    return torch.quantize_per_channel(w, scales.double(), torch.zeros(64, dtype=torch.long), 0, torch.qint8)


def test_quantized_tensors_round_trip_with_compact_scales():
    qw = _per_channel()
    qa = torch.quantize_per_tensor(torch.rand(10), 0.01, 3, torch.quint8)
    state = {"conv.weight": qw, "conv.bias": torch.ones(64), "fc._packed_params": (qa, None), "fc.dtype": torch.qint8}
    tensors, meta = flatten(state)
    assert tensors["conv.weight"].dtype == torch.int8 and tensors["conv.weight.scale"].dtype == torch.float32
    assert "conv.weight.zero_point" not in tensors  # symmetric: all 0, not written
    assert tensors["fc._packed_params.0.zero_point"].dtype == torch.int8  # the smallest type that holds 3
    assert json.loads(meta["quantized"]) == {"conv.weight": 0, "fc._packed_params.0": -1}
    assert meta["fc.dtype"] == "torch.qint8"
    assert "fc._packed_params.1" not in tensors  # None is not written
    blob = to_bytes(state)
    back = load_quantized(blob)
    assert metadata(blob)["fc.dtype"] == "torch.qint8"
    assert back["conv.weight"].is_quantized and torch.equal(back["conv.weight"].int_repr(), qw.int_repr())
    assert torch.allclose(back["conv.weight"].dequantize(), qw.dequantize(), rtol=1e-6)  # float32 scales suffice
    assert back["fc._packed_params.0"].q_zero_point() == 3 and torch.equal(back["conv.bias"], torch.ones(64))


def test_size_is_smaller_than_torch_save_and_never_pickles():
    state = {f"layer{i}.weight": _per_channel() for i in range(20)}
    buf = io.BytesIO()
    torch.save(state, buf)
    ours = size_bytes(state)
    assert ours < buf.tell()
    assert ours < 20 * (64 * 8 * 9 + 64 * 4) + 8_000  # values, float32 scales, header
    assert b"PK" not in to_bytes(state)[:4]  # not a zip/pickle


def test_shared_tensors_are_written_once_each():
    w = torch.randn(4, 4)
    assert size_bytes({"a": w, "b": w, "c": w[:2]}) > 4 * 16 * 2 + 4 * 8


def test_torchao_tensor_subclasses_are_written_as_their_parts():
    from torch import nn
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    m = nn.Sequential(nn.Linear(64, 32))
    quantize_(m, Int8WeightOnlyConfig())
    tensors, meta = flatten(m.state_dict())
    assert tensors["0.weight.qdata"].dtype == torch.int8 and tensors["0.weight.qdata"].shape == (32, 64)
    assert meta["0.weight.type"].endswith("Int8Tensor") and "0.weight" not in tensors
    assert size_bytes(m.state_dict()) < 32 * 64 + 32 * 4 * 3 + 2_000
