"""Checkpoints from strangers: what a file is, from its bytes; what it may cost, before torch reads it.

Nothing trusts a file name. :func:`sniff` tells the three formats apart by content:

- **safetensors**: an 8-byte little-endian header length, then a JSON object;
- **PyTorch zip** (what ``torch.save`` writes): a zip archive of *stored* (uncompressed) records;
- **legacy PyTorch** (``_use_new_zipfile_serialization=False``): a pickle (first byte ``0x80``).

:func:`check_file` then bounds what reading it may cost, before any of it is read. ``torch.save`` never
compresses, so a zip record stored compressed was crafted (or repacked), and can inflate without
bound: 1 MB of deflated zeros is a 1 GiB tensor. Every record must be stored, and together they
cannot declare more bytes than the file holds. A TorchScript archive (a program, not weights) is
named as such. Safetensors headers are capped at :data:`MAX_SAFETENSORS_HEADER` (a state dict of
80,000 tensors fits in 8 MiB; the parser's own cap of 100 MB of JSON would cost several times that).

:func:`check_state` checks what was read: names that are strings, tensors whose values fit in their
own data (a crafted view with zero strides can claim 2**40 values over 4 bytes), and finite values
(a NaN or Inf weight makes every later number meaningless: FP32 at 6% top-1 and an INT8 observer
failing with "min should be less than or equal to max"). Pickles that need code are refused by
``torch.load(weights_only=True)`` itself, in :func:`qcore.nets.weights.read_state_dict`.
"""

from __future__ import annotations

import struct
from pathlib import Path

from qcore.guards import safe_zip

__all__ = ["MAX_SAFETENSORS_HEADER", "CHECKPOINT_ZIP", "CheckpointRefused", "sniff", "check_file", "check_state"]

MAX_SAFETENSORS_HEADER = 8 * 2**20
CHECKPOINT_ZIP = safe_zip.ZipLimits(max_entries=100_000, max_files=100_000, max_directory_bytes=16 * 2**20)
_FINITE_CHUNK = 1 << 22  # values checked at a time: a 4 MB bool mask, whatever the tensor's size


class CheckpointRefused(ValueError):
    """A checkpoint that is refused before or after reading; the message names the file and the reason."""


def sniff(head: bytes, size: int, name: str) -> str:
    """``"safetensors"``, ``"torch-zip"`` or ``"torch-legacy"`` from a file's first 16 bytes and its size."""
    if size == 0:
        raise CheckpointRefused(f"{name} is empty (0 bytes); a checkpoint holds the model's weights")
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n > MAX_SAFETENSORS_HEADER:
            raise CheckpointRefused(f"{name} is a safetensors file with a header of {n:,} bytes; at most "
                                    f"{MAX_SAFETENSORS_HEADER:,} are allowed (80,000 tensors fit in that)")
        if 8 + n > size:
            raise CheckpointRefused(f"{name} is a safetensors file cut short: its header claims {n:,} bytes, "
                                    f"the file has {size - 8:,} after the length")
        return "safetensors"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy"
    raise CheckpointRefused(f"{name} is not a checkpoint: its content is neither safetensors (a length and a "
                            "JSON header) nor a PyTorch file (a zip archive or a pickle)")


def check_file(path: Path, name: str | None = None) -> str:
    """The format of ``path`` (see :func:`sniff`), after the checks of this module's docstring; the
    file's records are listed from the zip directory only, nothing is inflated or unpickled."""
    name = name or Path(path).name
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        kind = sniff(fh.read(16), size, name)
        if kind != "torch-zip":
            return kind
        try:
            zf, directory = safe_zip.open_checked(fh, CHECKPOINT_ZIP, name)
        except safe_zip.ZipRefused as exc:
            raise CheckpointRefused(str(exc)) from exc
        with zf:
            infos = zf.infolist()
    names = [i.filename for i in infos]
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise CheckpointRefused(f"{name} is a TorchScript archive (a program, not a state dict); save the "
                                "weights instead: torch.save(model.state_dict(), path), or use .safetensors")
    if not any(n.endswith("data.pkl") for n in names):
        raise CheckpointRefused(f"{name} is a zip archive but not a PyTorch checkpoint (it has no data.pkl record)")
    packed = [i for i in infos if i.compress_type != 0]
    if packed:
        i = max(packed, key=lambda i: i.file_size)
        raise CheckpointRefused(
            f"{name} holds {len(packed)} compressed record(s) ({i.filename}: {i.compress_size:,} bytes inflating to "
            f"{i.file_size:,}); torch.save never compresses, so the file was crafted or repacked, and inflating "
            "it could take any amount of memory. Refused before reading it; save it again with torch.save")
    declared = sum(i.file_size for i in infos)
    if declared > directory.archive_bytes:
        raise CheckpointRefused(f"{name} declares {declared:,} bytes of records in a file of "
                                f"{directory.archive_bytes:,} bytes; the file is damaged or crafted")
    return kind


def check_state(state: dict, source: str) -> None:
    """Refuse a state dict whose keys are not strings, whose tensors claim more values than their data
    holds, or whose floating-point tensors hold NaN or Inf (naming the first such tensor)."""
    import torch

    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        shown = ", ".join(f"{k!r} ({type(k).__name__})" for k in odd[:4])
        raise CheckpointRefused(f"{source} has {len(odd)} key(s) that are not names: {shown}; a state dict maps "
                                "parameter names (strings) to tensors")
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        if t.numel() and t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise CheckpointRefused(f"{source}: tensor {key!r} claims {t.numel():,} values of shape "
                                    f"{tuple(t.shape)} over {t.untyped_storage().nbytes():,} bytes of data (a view "
                                    "with overlapping strides); a saved weight holds its own values")
        if not t.is_floating_point() or t.numel() == 0:
            continue
        bad = _non_finite(t)
        if bad is not None:
            raise CheckpointRefused(f"{source}: tensor {key!r} {tuple(t.shape)} holds {bad} values; weights must "
                                    "be finite (a diverged training run, or a damaged file)")


def _non_finite(t) -> str | None:
    """``"NaN"``, ``"Inf"`` or None, looking at ``_FINITE_CHUNK`` values at a time."""
    import torch

    flat = t.detach().reshape(-1) if t.is_contiguous() else None
    rows = flat.split(_FINITE_CHUNK) if flat is not None else _row_chunks(t)
    for part in rows:
        if not bool(torch.isfinite(part).all()):
            return "NaN" if bool(torch.isnan(part).any()) else "Inf"
    return None


def _row_chunks(t):
    if t.dim() == 0:
        yield t
        return
    step = max(1, _FINITE_CHUNK // max(1, t[0].numel()))
    for i in range(0, t.shape[0], step):
        yield t[i : i + step]
