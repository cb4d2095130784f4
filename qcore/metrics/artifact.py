"""The deployable artifact as bytes: what every size figure measures.

A state dict is written as safetensors, the format qcore itself loads (no pickle):

- a plain tensor as it is;
- a torch quantized tensor (torch.ao's int8 weights) as its integer values, its scales in float32
  and its zero points in the smallest integer type that holds them (none where all are 0:
  symmetric weights), its channel axis in the header's ``quantized`` entry; ``torch.save`` would add
  float64 scales and int64 zero points, 12 more bytes per output channel, 3% of an INT8 mobilenet_v2;
- a tensor subclass (torchao's ``Int8Tensor``, ...) as the plain tensors it is made of
  (``key.qdata``, ``key.scale``, ...), its type and settings in the header;
- a tuple (the packed weight and bias of a quantized Linear) entry by entry, ``key.0``, ``key.1``;
- anything else that is not a tensor (a dtype) as text in the header.

:func:`load_quantized` reverses it, so the figure is the size of something that really loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

__all__ = ["flatten", "to_bytes", "metadata", "load_quantized"]

_INT_TYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def _smallest_int(values: torch.Tensor) -> torch.Tensor:
    lo, hi = (int(values.min()), int(values.max())) if values.numel() else (0, 0)
    for dtype in _INT_TYPES:
        info = torch.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return values.to(dtype)
    raise AssertionError("unreachable: int64 holds every zero point")


def flatten(state: Mapping) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` for safetensors; see the module docstring."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    quantized: dict[str, int] = {}  # quantized tensor -> its channel axis, -1 when it has one scale

    def put(key: str, value) -> None:
        if isinstance(value, torch.Tensor) and value.is_quantized:
            tensors[key] = value.int_repr()  # int8 / uint8 / int32: also says qint8 / quint8 / qint32
            if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                scale, zp = value.q_per_channel_scales().float(), value.q_per_channel_zero_points()
                quantized[key] = value.q_per_channel_axis()
            else:
                scale = torch.tensor([value.q_scale()], dtype=torch.float32)
                zp = torch.tensor([value.q_zero_point()])
                quantized[key] = -1
            tensors[key + ".scale"] = scale
            if zp.any():  # symmetric weights: all zero points are 0, and none are written
                tensors[key + ".zero_point"] = _smallest_int(zp)
        elif isinstance(value, torch.Tensor) and hasattr(value, "__tensor_flatten__"):
            names, ctx = value.__tensor_flatten__()  # a tensor subclass (torchao's Int8Tensor, ...): its parts
            meta[key + ".type"] = f"{type(value).__module__}.{type(value).__qualname__}"
            meta[key + ".ctx"] = repr(ctx)
            for name in names:
                put(f"{key}.{name}", getattr(value, name))
        elif isinstance(value, torch.Tensor):
            tensors[key] = value.detach()
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                put(f"{key}.{i}", item)
        elif value is not None:
            meta[key] = str(value)

    for key, value in state.items():
        put(str(key), value)
    if quantized:
        meta["quantized"] = json.dumps(quantized, separators=(",", ":"))
    # safetensors refuses tensors that share memory (tied weights, views of one storage): copy those
    # only, not the whole model (a second copy of a 300 MB state dict just to measure it)
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr()
        whole = v.is_contiguous() and v.storage_offset() == 0 and v.nbytes == v.untyped_storage().nbytes()
        out[k] = v if whole and ptr not in seen else v.contiguous().clone()
        seen.add(ptr)
    return out, meta


def to_bytes(artifact: Mapping | bytes) -> bytes:
    """The artifact serialized as it would be deployed (bytes artifacts are already serialized)."""
    if isinstance(artifact, (bytes, bytearray)):
        return bytes(artifact)
    tensors, meta = flatten(artifact)
    return st_save(tensors, metadata=meta or None)


def metadata(blob: bytes) -> dict[str, str]:
    """The text entries of a safetensors header."""
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]).get("__metadata__") or {}


def load_quantized(blob: bytes) -> dict[str, torch.Tensor]:
    """:func:`to_bytes`'s output read back, quantized tensors rebuilt from values, scales and zero points.

    Tuples and tensor subclasses come back as their parts (``key.0``, ``key.qdata``, ...); text entries
    are in :func:`metadata`.
    """
    tensors, meta = st_load(blob), metadata(blob)
    quantized = json.loads(meta.get("quantized", "{}"))
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.endswith((".scale", ".zero_point")) and key.rsplit(".", 1)[0] in quantized:
            continue  # read with its values below
        if key not in quantized:
            out[key] = value
            continue
        scale = tensors[key + ".scale"]
        zp = tensors.get(key + ".zero_point", torch.zeros(scale.shape, dtype=torch.long))
        if quantized[key] >= 0:
            out[key] = torch._make_per_channel_quantized_tensor(value, scale.double(), zp.long(), quantized[key])
        else:
            out[key] = torch._make_per_tensor_quantized_tensor(value, float(scale[0]), int(zp[0]))
    return out
