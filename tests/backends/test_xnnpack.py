"""ExecuTorch's XNNPACK backend on small CNNs: real int8 programs, their size, what falls back, the refusals."""

import importlib.util

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, get_backend, kind_problem, quantize, resolve_backend
from qcore.metrics.measure import accuracy, size_bytes
from qcore.quant.spec import QuantSpec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None, reason="executorch not installed (requirements-xnnpack.txt)"
)


def _cnn():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),  # depthwise, as in mobilenet
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, stride=2),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
    return model


class _WithCumsum(nn.Module):
    """An op XNNPACK has no kernel for (cumsum) after the layers it has."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 10)

    def forward(self, x):
        return torch.cumsum(self.fc(self.conv(x).relu().amax((2, 3))), 1)


def _images(n, g):
    """Noise with a per-image, per-channel offset: pooled features (and so the classes) vary by image."""
    return torch.randn(n, 3, 32, 32, generator=g) + 2 * torch.randn(n, 3, 1, 1, generator=g)


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(0)
    return [_images(16, g) for _ in range(4)]


@pytest.mark.slow
def test_int8_is_native_accurate_and_smaller_than_fp32(calib, one_thread):
    model, example = _cnn(), calib[0][:1]
    q = quantize(model, QuantSpec("int8", backend="xnnpack"), calib, example)
    fp = quantize(model, QuantSpec("fp32", backend="xnnpack"), calib, example)
    assert q.backend == fp.backend == "xnnpack" and q.kernel == "native" and fp.kernel == "native"
    assert q.quantized_layers == 4 and q.total_layers == 4
    assert isinstance(q.artifact, bytes) and q.artifact[4:8] == b"ET12"  # an ExecuTorch flatbuffer program
    assert size_bytes(q.artifact) < 0.45 * size_bytes(fp.artifact)  # int8 weights: well under half
    x = _images(40, torch.Generator().manual_seed(1))  # a new batch shape: its own program, then padded batches
    with torch.no_grad():
        ref = model(x)
        out_q, out_fp = q(x), fp(x)
        assert torch.equal(q(x[:25]), out_q[:25])  # 25 rows run padded to 40, the padding dropped
    assert ((out_fp - ref).norm() / ref.norm()).item() < 1e-4
    assert ((out_q - ref).norm() / ref.norm()).item() < 0.05
    acc = accuracy(out_q, ref.argmax(1), ref)
    assert acc.agreement >= 90.0 and acc.logit_kl < 1e-5
    top2 = ref.topk(2, 1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.05 * ref.abs().max()  # not a near-tie
    assert clear.sum() >= 10 and torch.equal(out_q[clear].argmax(1), ref[clear].argmax(1))
    assert len(q.builds) == 2 and {tuple(r.meta["shape"]) for r in q.builds} == {(1, 3, 32, 32), (40, 3, 32, 32)}
    assert "XNNPACK thread pool" in q.notes[0] and q.engine.startswith("xnnpack")
    assert any("portable kernels" in n or "every op delegated" in n for n in q.notes)


def test_portable_fallbacks_are_named(calib, one_thread):
    q = quantize(_WithCumsum().eval(), QuantSpec("fp32", backend="xnnpack"), calib, calib[0][:1])
    note = next(n for n in q.notes if "portable kernels" in n)
    assert "cumsum" in note and "convolution" not in note and q.kernel == "native"
    assert q.builds[0].meta["portable"].get("aten_cumsum_default") == 1


def test_refusals_name_what_is_allowed():
    assert kind_problem(QuantSpec("int8", mode="dynamic", backend="xnnpack")).startswith(
        "backend='xnnpack' does not run mode='dynamic'; allowed: auto, fx, torchao, pt2e"
    )
    with pytest.raises(BackendUnavailable, match="runs on the CPU"):
        resolve_backend(QuantSpec("int8", backend="xnnpack"), "cuda")
    assert get_backend("xnnpack").unsupported(QuantSpec("fp16", backend="xnnpack"), "cpu").startswith(
        "the xnnpack backend runs FP32 and static INT8"
    )
    assert get_backend("xnnpack").own_threads  # timed in a block of its own, like ORT


def test_thread_pool_follows_torch():
    from qcore.backends.xnnpack import set_threads

    assert set_threads(1) == 1
    assert set_threads() == torch.get_num_threads()
