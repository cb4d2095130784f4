"""Weights whose integer codes were chosen before the backend sees them (AdaRound: :mod:`qcore.ptq.adaround`).

An algorithm that chooses each weight's code ``q`` writes ``w = (q - zero_point) * scale`` into the FP32 model
and pins ``(scale, zero_point)`` for that tensor here. A backend's weight quantizer that finds its tensor pinned
uses those qparams instead of the ones it would compute (a min-max observer on ``w`` would see a slightly
different range: ``max|w|`` is a code times the scale, no longer the original maximum), so rounding
``w / scale`` gives back exactly ``q``: the codes reach the int8/int4 kernel bit for bit.

Tensors are recognised by their values (shape, dtype and a SHA-1 of the bytes), so the pins survive the copies,
traces and exports the backends make. Pins live for the length of a ``with pinned(...)`` block, in this thread
and its context only.

>>> import torch
>>> w = torch.tensor([[0.5, -1.0]])
>>> with pinned({fingerprint(w): (torch.tensor([0.5]), torch.tensor([0]))}) as used:
...     lookup(w)[0].tolist(), len(used)
([0.5], 1)
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

__all__ = ["fingerprint", "pinned", "lookup", "active"]

_PINS: contextvars.ContextVar[Mapping[str, tuple] | None] = contextvars.ContextVar("qcore_pinned_weights",
                                                                                  default=None)
_USED: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("qcore_pins_used", default=None)


def fingerprint(w: torch.Tensor) -> str:
    """What identifies a weight tensor by value: its shape, dtype and a SHA-1 of its bytes."""
    data = w.detach().to("cpu").contiguous()
    return f"{tuple(data.shape)}:{data.dtype}:{hashlib.sha1(data.numpy().tobytes()).hexdigest()}"


@contextmanager
def pinned(pins: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[set[str]]:
    """Within the block, weights whose :func:`fingerprint` is a key of ``pins`` quantize with its
    ``(scale, zero_point)`` (one value per tensor, row or group, as the backend's quantizer lays them out).
    Yields the set of the pins a backend looked up, filled as they are (so a caller can tell that every chosen
    code reached the kernel)."""
    used: set[str] = set()
    token, token_used = _PINS.set({**(_PINS.get() or {}), **pins}), _USED.set(used)
    try:
        yield used
    finally:
        _PINS.reset(token)
        _USED.reset(token_used)


def active() -> bool:
    """True inside a :func:`pinned` block with pins (a backend skips hashing its weights otherwise)."""
    return bool(_PINS.get())


def lookup(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, zero_point)`` pinned for ``w``, or None."""
    pins = _PINS.get()
    if not pins or w.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return None
    key = fingerprint(w)
    used = _USED.get()
    if key in pins and used is not None:
        used.add(key)
    return pins.get(key)
