"""Static against dynamic: one range fixed ahead of time, or each batch's own range at run time.

Static quantization calibrates once (on the calibration batches, with the chosen method) and uses that
range for every later batch: a batch that reaches further is clipped, one that stays smaller wastes
levels. Dynamic quantization takes each batch's min and max as it runs (what torch's dynamic INT8
does): nothing is clipped, but the range costs a pass over the tensor per batch, and the same image
gets different integers depending on its batch mates.

Example: batches spanning [0, 3.0] and [0, 4.2] with a static 8-bit asymmetric range [0, 3.5]: the
first never reaches the top 36 of its 256 codes (3.0 is code 219 with steps of 3.5 / 255), the second has its
values above 3.5 clipped. Dynamically, each gets steps of its own max / 255.
"""

from __future__ import annotations

from dataclasses import dataclass

from qcore.learn.affine import Affine, ErrorSplit, affine_error
from qcore.learn.capture import Captured

__all__ = ["BatchRanges", "static_vs_dynamic"]


@dataclass
class BatchRanges:
    """Per captured batch: its own range (what dynamic quantization uses) and both errors."""

    static: Affine
    batch_lo: list[float]
    batch_hi: list[float]
    static_splits: list[ErrorSplit]
    dynamic_splits: list[ErrorSplit]
    images: list[int]  # images per batch


def static_vs_dynamic(captured: Captured, static: Affine) -> BatchRanges:
    """Each batch under the ``static`` mapping and under its own min-max mapping (same bits and scheme)."""
    if captured.kind != "activations":
        raise ValueError("static against dynamic compares activation batches; weights have one range, fixed")
    lo, hi, s_splits, d_splits = [], [], [], []
    for b in captured.batches:
        b_lo, b_hi = float(b.min()), float(b.max())
        lo.append(b_lo)
        hi.append(b_hi)
        s_splits.append(affine_error(b, static))
        d_splits.append(affine_error(b, Affine.fit(b_lo, b_hi, static.bits, static.symmetric)))
    return BatchRanges(static, lo, hi, s_splits, d_splits, [b.shape[0] for b in captured.batches])
