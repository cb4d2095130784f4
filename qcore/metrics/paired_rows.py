"""Which evaluation images a row got right, kept with the row, so that any two rows of one evaluation set can be
compared *paired*: the change from one quantized point to another (a fix the doctor suggested, a walk's step) with
the interval of :func:`qcore.metrics.stats.paired_delta`, not only each row's change against FP32.

A row's manifest holds ``correct``: one bit an image in evaluation order (1: its top-1 prediction,
:func:`qcore.metrics.measure.predicted_class`, equals the label), packed eight to a byte, most significant bit
first (numpy's ``packbits``), in base64; and ``eval_key``, what defines the images (dataset, split seed, number of
images, image size): two rows are paired only when their keys are equal. With calibration draws, the bits are the
first draw's (the one the headline row's own model was built from), and the change says so.

2000 images cost 336 characters in the manifest.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import torch

from qcore.metrics.stats import paired_delta

__all__ = ["encode", "decode", "eval_key", "attach", "Change", "paired_change"]


def encode(correct: torch.Tensor) -> str:
    """Pack a boolean vector (one value an image) into base64.

    >>> encode(torch.tensor([True, False, True, True, False, False, False, False, True]))
    'sIA='
    """
    bits = np.packbits(correct.detach().cpu().numpy().astype(np.uint8).reshape(-1))
    return base64.b64encode(bits.tobytes()).decode("ascii")


def decode(text: str, n: int) -> torch.Tensor:
    """The ``n`` booleans :func:`encode` packed; raises ValueError for text that does not hold ``n`` bits."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"correct={text[:20]!r}... is not base64 packed bits: {exc}") from None
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"correct holds {len(raw) * 8} bits; allowed: {n} images ({(n + 7) // 8} bytes)")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:n]
    return torch.from_numpy(bits.astype(bool))


def eval_key(p) -> str:
    """What defines a sweep's evaluation images (``p``: a :class:`qcore.runs.sweep.Prepared`): the dataset, the
    split's seed, the images' side and a hash of their labels in order (which also counts them)."""
    labels = p.labels.detach().cpu().to(torch.int64).numpy().tobytes()
    side = p.eval_batches[0][0].shape[-1] if p.eval_batches else 0
    digest = hashlib.sha256(labels).hexdigest()[:16]
    return f"{p.config.dataset}|seed={p.config.seed}|side={side}|n={len(p.labels)}|labels={digest}"


def attach(r, correct: torch.Tensor, eval_key: str) -> None:
    """Keep ``correct`` (one boolean an evaluation image) on Result ``r``: a copy of its manifest (which rows of a
    sweep share) with ``correct`` and ``eval_key`` set."""
    r.manifest = {**r.manifest, "correct": encode(correct), "eval_key": eval_key}


class Change:
    """The paired change in top-1 from row ``a`` to row ``b`` on the same images, in points, with its 95% interval
    and the images ``b`` lost and gained against ``a``."""

    def __init__(self, delta: float, lo: float, hi: float, lost: int, gained: int, images: int, note: str = ""):
        self.delta, self.lo, self.hi = delta, lo, hi
        self.lost, self.gained, self.images, self.note = lost, gained, images, note

    def text(self) -> str:
        """``+0.85 pts (95% interval +0.52 to +1.18; 21 gained, 4 lost of 2000 images)``."""
        return (f"{self.delta:+.2f} pts (95% interval {self.lo:+.2f} to {self.hi:+.2f}; {self.gained} gained, "
                f"{self.lost} lost of {self.images} images{'; ' + self.note if self.note else ''})")


def paired_change(a, b) -> Change | None:
    """The paired top-1 change from Result ``a`` to Result ``b``, or None when either row has no bits or they were
    evaluated on different images (their ``eval_key`` differ)."""
    ma, mb = a.manifest or {}, b.manifest or {}
    if not ma.get("correct") or not mb.get("correct") or ma.get("eval_key") != mb.get("eval_key"):
        return None
    n = a.eval_images or 0
    if not n or n != (b.eval_images or 0):
        return None
    ca, cb = decode(ma["correct"], n), decode(mb["correct"], n)
    both = int((ca & cb).sum())
    lost = int((ca & ~cb).sum())
    gained = int((~ca & cb).sum())
    neither = n - both - lost - gained
    delta, lo, hi = paired_delta(both, lost, gained, neither)
    drawn = (a.calib_draws or 1) > 1 or (b.calib_draws or 1) > 1
    note = "each row's first calibration draw" if drawn else ""
    return Change(100 * delta, 100 * lo, 100 * hi, lost, gained, n, note)
