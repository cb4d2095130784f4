"""What the doctor finds and what it suggests: a measured :class:`Cause` with its evidence, and each :class:`Fix` as
a spec (or a change of the sweep's settings) that can be measured as a move on the frontier.

A fix's ``score`` orders the suggestions (highest first): the accuracy causes put the points they expect to win
back (a layer's measured gain alone in FP32, or the share of the loss the split puts on weights or activations);
the speed causes the speed-up they expect (the fastest backend measured here over this point's). Scores of the two
kinds are not compared with each other: accuracy suggestions come first on a point that lost accuracy, speed
suggestions first on a point that lost speed (:mod:`qcore.doctor.diagnose`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qcore.quant.spec import QuantSpec

__all__ = ["CAUSES", "FIX_KINDS", "Fix", "Cause"]

# The fixed list of causes the doctor can measure, with what each means (the CLI and the app show these words).
CAUSES: dict[str, str] = {
    "channel-spread": "one scale for the whole tensor, set by a few channels (max/median channel range)",
    "outliers": "a range set by a few outlying values (the share of values beyond half the range)",
    "relu-symmetric": "non-negative values (after a ReLU) under a symmetric scheme: half the codes unused",
    "calib-exceeded": "held-out images exceed the calibrated range (clipping rate, test vs calibration images)",
    "calib-small": "a calibration too small: the top-1 moves with the choice of calibration images (draw spread)",
    "sensitive": "this place alone costs the points (only it in FP32 wins them back), with none of the causes above",
    "weights": "the weights' rounding costs most of the loss (split: only the weights quantized)",
    "activations": "the activations' rounding costs most of the loss (split: only the activations quantized)",
    "slow-backend": "another backend measured faster here for this kind of spec",
    "float-ops": "layers with no int8 kernel on this backend run in FP32 between quantize/dequantize pairs",
    "overhead": "quantize/dequantize, layout conversions or framework overhead take much of the time",
    "no-fast-math": "this CPU has no fast arithmetic for this precision",
    "batch": "at this batch size the call is dominated by fixed costs",
}
FIX_KINDS = ("accuracy", "speed")


@dataclass(frozen=True)
class Fix:
    """One suggestion. ``spec`` is what to measure (None when the fix is advice that no spec expresses, said in
    ``what``); ``config`` the sweep settings it changes (e.g. ``{"calib_size": 1024}``, ``{"batch_size": 32}``):
    empty when the spec alone says it, which is what "Try it" can queue into the same job."""

    what: str  # what changes, in words: "per-channel weights"
    why: str  # the cause it answers, with the evidence's numbers
    kind: str  # FIX_KINDS
    score: float  # expected benefit (points of top-1 for accuracy, speed-up factor for speed); orders suggestions
    spec: QuantSpec | None = None
    config: dict[str, Any] = field(default_factory=dict)
    cause: str = ""  # a key of CAUSES

    def __post_init__(self) -> None:
        if self.kind not in FIX_KINDS:
            raise ValueError(f"kind={self.kind!r} is not allowed; allowed: {', '.join(FIX_KINDS)}")
        if self.cause and self.cause not in CAUSES:
            raise ValueError(f"cause={self.cause!r} is not allowed; allowed: {', '.join(CAUSES)}")

    @property
    def queueable(self) -> bool:
        """True when measuring it needs only its spec in the same job (no change of the sweep's settings)."""
        return self.spec is not None and not self.config

    def to_dict(self) -> dict:
        return {"what": self.what, "why": self.why, "kind": self.kind, "score": self.score, "cause": self.cause,
                "spec": self.spec.to_dict() if self.spec is not None else None, "config": dict(self.config),
                "label": self.spec.label() if self.spec is not None else ""}

    @classmethod
    def from_dict(cls, d: dict) -> Fix:
        spec = QuantSpec.from_dict(d["spec"]) if d.get("spec") else None
        return cls(what=d["what"], why=d["why"], kind=d["kind"], score=float(d["score"]), spec=spec,
                   config=dict(d.get("config") or {}), cause=d.get("cause", ""))


@dataclass
class Cause:
    """One measured cause at one place (``where``: a layer or activation quantizer's name; "" for the whole model),
    with its evidence in words and numbers, and the fixes that answer it."""

    cause: str  # a key of CAUSES
    where: str
    evidence: str
    numbers: dict[str, float] = field(default_factory=dict)
    fixes: list[Fix] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"cause={self.cause!r} is not allowed; allowed: {', '.join(CAUSES)}")

    def to_dict(self) -> dict:
        return {"cause": self.cause, "where": self.where, "evidence": self.evidence, "numbers": dict(self.numbers),
                "fixes": [f.to_dict() for f in self.fixes]}

    @classmethod
    def from_dict(cls, d: dict) -> Cause:
        return cls(cause=d["cause"], where=d["where"], evidence=d["evidence"], numbers=dict(d.get("numbers") or {}),
                   fixes=[Fix.from_dict(f) for f in d.get("fixes") or []])
