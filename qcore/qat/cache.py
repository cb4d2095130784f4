"""Fine-tuned states on disk, keyed by everything that defines them, like the baselines (:mod:`qcore.nets.train`).

``<data home>/qat/<model>__<what>__<key>.safetensors`` holds the trained state dict (the FP32 control's, or
the QAT graph's before conversion: weights, BatchNorm statistics, fake-quantizer ranges), ``.json`` beside it
the curve and the cost. The key hashes the starting weights' bytes, the schedule, the evaluation images, and
for QAT the spec's quantization fields and the calibration images: change any of them and it trains anew.
Files are written atomically (:func:`qcore.env.paths.atomic_write_bytes`); :func:`locked` holds an exclusive
``flock`` on a ``.lock`` file beside them while one process trains, so two workers asking for the same key
train it once (the second waits, then loads).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from qcore.env.paths import atomic_write_bytes, subdir

__all__ = ["VERSION", "tensor_digest", "cache_path", "locked", "load", "save"]

VERSION = 2  # 2: the fine-tune seeds dropout's generator (states trained before differ run to run)


def tensor_digest(tensors) -> str:
    """A hash of tensors' bytes, in order (a state dict's values, calibration batches)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(str((t.dtype, t.numel())).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def cache_path(model: str, what: str, parts: dict) -> Path:
    """Where the state trained for ``parts`` (a JSON-able dict of everything that defines it) lives."""
    blob = json.dumps({"version": VERSION, "torch": torch.__version__, **parts}, sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return subdir("qat") / f"{model}__{what}__{key}.safetensors"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s ``.lock`` file for the length of the block (blocks until it is free)."""
    lock = path.with_suffix(".lock")
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """``(state dict, record)`` when both files are there and readable, else None."""
    from safetensors.torch import load as st_load

    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        return st_load(path.read_bytes()), json.loads(meta.read_text())
    except (OSError, ValueError):
        return None


def save(path: Path, state: dict[str, torch.Tensor], record: dict) -> None:
    """The state (safetensors) and its record (JSON), each written atomically, the state first."""
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    atomic_write_bytes(path, st_save(tensors))
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(record, indent=1).encode())
