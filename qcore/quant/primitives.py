"""The arithmetic of quantization, written once: qparams, quantize, dequantize, INT4 packing.

The affine mapping between a real value ``x`` and an integer ``q`` in ``[qmin, qmax]`` is::

    q = clamp(round(x / scale) + zero_point, qmin, qmax)
    x ~= (q - zero_point) * scale

Worked example (asymmetric, uint8): a tensor ranging over ``[-1.0, 3.0]`` gives
``scale = (3 - (-1)) / (255 - 0) = 0.015686`` and ``zero_point = 0 - round(-1 / 0.015686) = 64``.
Then ``x = 0.5`` becomes ``q = round(0.5 / 0.015686) + 64 = 32 + 64 = 96``, which dequantizes
to ``(96 - 64) * 0.015686 = 0.50196``: an error of 0.002, below half a step (0.0078).

Symmetric quantization fixes the zero point at the middle of the integer range (0 for int8,
128 for uint8, 8 for uint4) and uses ``scale = max(|min|, |max|) / ((qmax - qmin) / 2)``, as
torch.ao does, so that the parameters computed here equal the ones the int8 kernels get.

The range always includes 0, so that zero padding and ReLU outputs are exact.

Functions accept per-tensor parameters (0-d tensors) or per-channel/per-group ones
(1-d tensors broadcast along ``axis``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["EPS", "qrange", "choose_qparams", "quantize", "dequantize", "fake_quantize", "to_groups", "from_groups",
           "pack_int4", "unpack_int4", "packed_nbytes"]

EPS = torch.finfo(torch.float32).eps


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a ``bits``-wide type: ``qrange(8, True) == (-128, 127)``."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits={bits} is not supported; allowed: 2..16")
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def choose_qparams(
    min_val: torch.Tensor | float,
    max_val: torch.Tensor | float,
    qmin: int,
    qmax: int,
    symmetric: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float32) and zero point (int64) that map ``[min_val, max_val]`` onto ``[qmin, qmax]``.

    Works element-wise, so per-channel ranges give per-channel parameters.
    """
    min_val = torch.as_tensor(min_val, dtype=torch.float32)
    max_val = torch.as_tensor(max_val, dtype=torch.float32)
    if torch.any(min_val > max_val):
        raise ValueError("min_val must not exceed max_val")
    min_neg = torch.clamp(min_val, max=0.0)
    max_pos = torch.clamp(max_val, min=0.0)
    if symmetric:
        amax = torch.maximum(-min_neg, max_pos)
        scale = amax / ((qmax - qmin) / 2)
        scale = torch.clamp(scale, min=EPS)
        zero_point = torch.full_like(scale, (qmin + qmax + 1) // 2, dtype=torch.int64)
    else:
        scale = (max_pos - min_neg) / float(qmax - qmin)
        scale = torch.clamp(scale, min=EPS)
        zero_point = qmin - torch.round(min_neg / scale).to(torch.int64)
        zero_point = torch.clamp(zero_point, qmin, qmax)
    return scale, zero_point


def _along(t: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Reshape per-channel parameters ``t`` so they broadcast against ``x`` on ``axis``."""
    if axis is None or t.dim() == 0:
        return t
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


def quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, axis: int | None = None) -> torch.Tensor:
    """Real values to integers (returned as int32)."""
    scale = _along(torch.as_tensor(scale, dtype=torch.float32), x, axis)
    zero_point = _along(torch.as_tensor(zero_point), x, axis)
    q = torch.round(x.float() / scale) + zero_point
    return torch.clamp(q, qmin, qmax).to(torch.int32)


def dequantize(q: torch.Tensor, scale, zero_point, axis: int | None = None) -> torch.Tensor:
    """Integers back to real values (float32)."""
    scale = _along(torch.as_tensor(scale, dtype=torch.float32), q, axis)
    zero_point = _along(torch.as_tensor(zero_point), q, axis)
    return (q.to(torch.float32) - zero_point) * scale


def fake_quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, axis: int | None = None) -> torch.Tensor:
    """Quantize then dequantize: the float tensor the integer kernel effectively sees."""
    return dequantize(quantize(x, scale, zero_point, qmin, qmax, axis), scale, zero_point, axis)


# --- groups --------------------------------------------------------------------------------------


def to_groups(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, int]:
    """View a weight as ``(out_channels, n_groups, group_size)`` along its flattened input dims.

    The input dimension is zero-padded to a multiple of ``group_size``; the pad length is
    returned so :func:`from_groups` can cut it off again.
    """
    flat = w.reshape(w.shape[0], -1)
    pad = (-flat.shape[1]) % group_size
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.reshape(w.shape[0], -1, group_size), pad


def from_groups(g: torch.Tensor, shape: torch.Size | tuple[int, ...], pad: int) -> torch.Tensor:
    """Inverse of :func:`to_groups`."""
    flat = g.reshape(g.shape[0], -1)
    if pad:
        flat = flat[:, : flat.shape[1] - pad]
    return flat.reshape(shape)


# --- INT4 packing --------------------------------------------------------------------------------


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack unsigned 4-bit values (0..15) two per byte: element 2i in the low nibble.

    An odd count is padded with one zero nibble. Returns a flat uint8 tensor of
    ``ceil(n / 2)`` bytes.
    """
    flat = q.reshape(-1).to(torch.int32)
    if flat.numel() and (flat.min() < 0 or flat.max() > 15):
        raise ValueError("pack_int4 takes values in 0..15 (offset signed values by 8 first)")
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    pairs = flat.reshape(-1, 2)
    return (pairs[:, 0] | (pairs[:, 1] << 4)).to(torch.uint8)


def unpack_int4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: the first ``numel`` 4-bit values as uint8 (0..15)."""
    if numel > 2 * packed.numel():
        raise ValueError(f"{packed.numel()} bytes hold at most {2 * packed.numel()} values, not {numel}")
    p = packed.reshape(-1).to(torch.int32)
    out = torch.stack([p & 0xF, (p >> 4) & 0xF], dim=1).reshape(-1)
    return out[:numel].to(torch.uint8)


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes needed to store ``numel`` values of ``bits`` bits packed densely."""
    return math.ceil(numel * bits / 8)
