"""How the backend that will run a spec quantizes one weight, as rows of codes: what the PTQ algorithms aim at.

Bias correction must know the error the kernel's weights will make, and AdaRound chooses codes the kernel must
take as they are, so both quantize each weight exactly as the chosen backend does:

- fx and pt2e (static and dynamic INT8): torch's min-max observer, symmetric int8 in [-128, 127], per tensor or
  per output channel, ``scale = max|w| / 127.5`` clamped below at the observer's eps (float32's for torch.ao,
  2**-12 for the X86 Inductor quantizer of pt2e);
- weight-only (INT8/INT4): :func:`qcore.backends.weight_only.weight_qparams`, the spec's calibration, scheme and
  granularity (per-group rows too), scales as stored (FP16, or 8-bit codes per group).

A :class:`Grid` holds one weight's rows, their qparams and how to put rows back into the weight's shape;
:meth:`Grid.pin` gives the pin (:mod:`qcore.quant.pinned`) that makes the backend take chosen codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qcore.backends.base import PTQ_BACKENDS
from qcore.backends.weight_only import weight_qparams
from qcore.quant import pinned
from qcore.quant.primitives import EPS, choose_qparams, from_groups
from qcore.quant.spec import QuantSpec

__all__ = ["PT2E_WEIGHT_EPS", "Grid", "grid_for"]

PT2E_WEIGHT_EPS = 2.0**-12  # X86InductorQuantizer's weight observer clamps scales below at this


@dataclass
class Grid:
    """One weight as rows ``(n_rows, row_len)`` with a scale and zero point per row, and the way back."""

    rows: torch.Tensor  # float32, the weight's values (per-group rows zero-padded)
    scale: torch.Tensor  # float32 (n_rows,)
    zero_point: torch.Tensor  # int64 (n_rows,)
    qmin: int
    qmax: int
    shape: tuple[int, ...]
    rows_shape: tuple[int, ...]  # the padded shape from_groups takes back
    pad: int
    stored: tuple = ()  # what the pin carries for the backend: the scale as stored (and per-group scale codes)
    reciprocal: bool = False  # torch's int8 kernels round w * (1 / scale), qcore's weight-only w / scale

    def codes(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Nearest rounding of ``rows`` (default: the weight's), as the backend computes it (a tie can fall
        either way between ``w / s`` and ``w * (1 / s)``): int64 codes in [qmin, qmax]."""
        rows = self.rows if rows is None else rows
        scaled = rows * (1.0 / self.scale[:, None]) if self.reciprocal else rows / self.scale[:, None]
        q = torch.round(scaled) + self.zero_point[:, None]
        return q.clamp(self.qmin, self.qmax).to(torch.int64)

    def weight(self, codes: torch.Tensor) -> torch.Tensor:
        """The float weight that ``codes`` stand for, in the weight's shape."""
        rows = (codes.float() - self.zero_point[:, None].float()) * self.scale[:, None]
        return from_groups(rows.reshape(self.rows_shape), self.shape, self.pad)

    def fake(self) -> torch.Tensor:
        """The weight as the kernel will see it with nearest rounding."""
        return self.weight(self.codes())

    def pin(self, codes: torch.Tensor) -> tuple[torch.Tensor, dict[str, tuple]]:
        """``(weight, pins)``: the float weight of ``codes`` to put in the model and the pin that makes the
        backend quantize it to exactly ``codes``."""
        w = self.weight(codes)
        return w, {pinned.fingerprint(w): self.stored}


def grid_for(weight: torch.Tensor, spec: QuantSpec, backend: str, bits: int | None = None) -> Grid:
    """The rows and qparams ``backend`` will quantize ``weight`` with under ``spec`` (``bits``: 8 for a layer an
    INT4 weight-only spec keeps in INT8)."""
    w = weight.detach().float().cpu()
    if backend == "weight-only":
        bits = bits or spec.bits
        flat, rows_shape, pad, scale, zp, (qmin, qmax), code_span = weight_qparams(
            w, bits, spec.granularity, spec.group_size, spec.calibration, spec.symmetric, spec.percentile)
        stored = (scale, zp) + (tuple(code_span) if code_span is not None else ())
        return Grid(flat, scale.float(), zp.to(torch.int64), qmin, qmax, tuple(w.shape), rows_shape, pad, stored)
    backend = "pt2e" if backend == "pt2e-openvino" else backend  # the pt2e backend's graph and weight codes
    if backend not in ("fx", "pt2e"):
        raise ValueError(f"qcore does not know how the {backend} backend rounds its weights; allowed: "
                         f"{', '.join(PTQ_BACKENDS)}")
    rows = w.reshape(w.shape[0], -1) if spec.granularity == "per-channel" else w.reshape(1, -1)
    scale, _ = choose_qparams(rows.amin(1), rows.amax(1), -128, 127, symmetric=True)
    scale = scale.clamp(min=PT2E_WEIGHT_EPS if backend == "pt2e" else EPS)
    zp = torch.zeros_like(scale, dtype=torch.int64)  # torch.ao's symmetric int8 weights: zero point 0
    return Grid(rows, scale, zp, -128, 127, tuple(w.shape), tuple(rows.shape), 0, (scale, zp), reciprocal=True)
