import numpy as np
import pytest
import torch

from qcore.quant.primitives import (
    choose_qparams,
    dequantize,
    fake_quantize,
    from_groups,
    pack_int4,
    qrange,
    quantize,
    to_groups,
    unpack_int4,
)


def test_qrange():
    assert qrange(8, True) == (-128, 127)
    assert qrange(8, False) == (0, 255)
    assert qrange(4, True) == (-8, 7)
    with pytest.raises(ValueError, match="bits=1"):
        qrange(1, True)


def test_docstring_example_asymmetric():
    scale, zp = choose_qparams(-1.0, 3.0, 0, 255, symmetric=False)
    assert scale.item() == pytest.approx(4 / 255)
    assert zp.item() == 64
    q = quantize(torch.tensor([0.5]), scale, zp, 0, 255)
    assert q.item() == 96
    assert dequantize(q, scale, zp).item() == pytest.approx(0.50196, abs=1e-4)


def test_range_always_includes_zero():
    scale, zp = choose_qparams(2.0, 4.0, 0, 255, symmetric=False)
    assert zp.item() == 0 and scale.item() == pytest.approx(4 / 255)
    assert fake_quantize(torch.tensor([0.0]), scale, zp, 0, 255).item() == 0.0


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_per_tensor_matches_torch(symmetric):
    torch.manual_seed(0)
    x = torch.randn(1000) * 3 + 0.5
    qmin, qmax = (-128, 127)
    scale, zp = choose_qparams(x.min(), x.max(), qmin, qmax, symmetric)
    ref = torch.quantize_per_tensor(x, scale.item(), int(zp), torch.qint8)
    assert torch.equal(quantize(x, scale, zp, qmin, qmax), ref.int_repr().int())
    assert torch.allclose(fake_quantize(x, scale, zp, qmin, qmax), ref.dequantize())


def test_torch_observer_agrees_on_qparams():
    from torch.ao.quantization.observer import MinMaxObserver

    x = torch.randn(500) * 2
    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(x)
    s_ref, z_ref = obs.calculate_qparams()
    s, z = choose_qparams(x.min(), x.max(), 0, 255, symmetric=False)
    assert s.item() == pytest.approx(s_ref.item(), rel=1e-6)
    assert z.item() == z_ref.item()


def test_per_channel_matches_torch_and_naive_loop():
    torch.manual_seed(1)
    w = torch.randn(4, 3, 3, 3)
    lo, hi = w.flatten(1).amin(1), w.flatten(1).amax(1)
    scale, zp = choose_qparams(lo, hi, -128, 127, symmetric=True)
    q = quantize(w, scale, zp, -128, 127, axis=0)
    ref = torch.quantize_per_channel(w, scale.double(), zp, 0, torch.qint8)
    assert torch.equal(q, ref.int_repr().int())
    for c in range(4):  # a naive loop as the oracle (float32 division, round half to even)
        s = np.float32(scale[c].item())
        for v_q, v in zip(q[c].flatten().tolist(), w[c].flatten().tolist()):
            assert v_q == max(-128, min(127, int(np.rint(np.float32(v) / s))))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 64, 1001])
def test_pack_unpack_int4_round_trip(n):
    torch.manual_seed(n)
    q = torch.randint(0, 16, (n,), dtype=torch.uint8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 1) // 2
    assert torch.equal(unpack_int4(packed, n), q)


def test_pack_int4_layout_and_bad_input():
    assert pack_int4(torch.tensor([1, 2])).tolist() == [0x21]
    with pytest.raises(ValueError, match="0..15"):
        pack_int4(torch.tensor([16]))
    with pytest.raises(ValueError, match="hold at most"):
        unpack_int4(torch.zeros(2, dtype=torch.uint8), 5)


@pytest.mark.parametrize("shape,group", [((8, 3, 3, 3), 16), ((10, 64), 64), ((5, 7), 4)])
def test_groups_round_trip(shape, group):
    w = torch.randn(shape)
    g, pad = to_groups(w, group)
    assert g.shape[-1] == group and g.shape[0] == shape[0]
    assert torch.equal(from_groups(g, w.shape, pad), w)
