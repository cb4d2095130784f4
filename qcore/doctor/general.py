"""The model-wide accuracy fixes and the one ordered list of suggestions.

:func:`general_fixes` suggests what answers a loss anywhere in the model, before (or without) measuring where:
per-channel weights on a per-tensor spec, cross-layer equalization with bias correction, AdaRound, another
calibration and asymmetric activations (static INT8), and QAT. Its scores are priors, the points expected back
from published recoveries, scaled by the part of the loss the fix can touch:

- ``L`` the points lost, ``w`` the weights' share of it (the split's; 1 for weight-only, where nothing else is
  quantized; 0.5 when unknown), ``L_w = w L`` and ``L_a = (1 - w) L``;
- per-channel weights: ``0.6 L_w`` (per-channel recovers most of a per-tensor loss on MobileNets: Krishnamoorthi,
  arXiv:1806.08342, table 2); cross-layer equalization + bias correction: ``0.4 L_w`` per-tensor, ``0.1 L_w``
  per-channel (Nagel et al., arXiv:1906.04721, table 5: MobileNetV2 per-tensor INT8 from 0.1% to 70.9%, short of
  per-channel; little is left to equalize once each channel has its scale); AdaRound: ``0.35 L_w``
  (arXiv:2004.10568, table 6, with 10,000 steps on 1,024 images; here 500 steps on 256 images);
- another calibration or asymmetric activations: ``0.25 L_a``; QAT: ``0.5 L`` when at least
  :data:`QAT_LARGE` points were lost, else ``0.1 L`` (it trains: worth it for a large loss only).

:mod:`qcore.doctor.causes` measures the same specs where it can (the noise they remove on the real tensors) and
scores them from those numbers; :func:`rank_fixes` keeps each spec once: its measured score where a cause measured
it (the highest, if several did), else its prior.
Every spec is checked against the backends (:func:`spec_problem`): one no backend runs is not suggested.
"""

from __future__ import annotations

import json
import math

from qcore.doctor.fix import Cause, Fix
from qcore.quant.spec import QAT_DEFAULTS, QuantSpec, SpecError

__all__ = ["PRIORS", "QAT_LARGE", "spec_problem", "make_fix", "weights_part", "calibration_alternative",
           "qat_spec", "cle_spec", "changed", "general_fixes", "rank_fixes"]

PRIORS = {"per-channel": 0.6, "cle-per-tensor": 0.4, "cle-per-channel": 0.1, "adaround": 0.35, "calibration": 0.25,
          "asymmetric": 0.25, "qat-large": 0.5, "qat-small": 0.1}
QAT_LARGE = 10.0  # points lost from which QAT is worth its training


def spec_problem(spec: QuantSpec, device: str = "cpu") -> str | None:
    """Why no backend runs ``spec`` on ``device`` (None: one does): the registry's own answer."""
    from qcore.backends import backends_for, get_backend, kind_problem

    if (why := kind_problem(spec)) is not None:
        return why
    names = backends_for(spec, device)
    if spec.backend == "auto":
        return None if names else f"no backend runs {spec.label()} on {device}"
    if spec.backend in names:
        return None
    return get_backend(spec.backend).problem(spec.ptq_spec, device) or f"{spec.backend} does not run {spec.label()}"


def make_fix(what: str, why: str, cause: str, score: float, spec: QuantSpec | None, device: str = "cpu",
             config: dict | None = None) -> Fix | None:
    """A :class:`Fix` of kind accuracy, or None when its spec is one no backend runs here."""
    if spec is not None and spec_problem(spec, device) is not None:
        return None
    score = 0.0 if not math.isfinite(score) else max(0.0, float(score))
    return Fix(what, why, "accuracy", round(score, 3), spec, dict(config or {}), cause)


def weights_part(spec: QuantSpec, weights_share: float | None) -> float:
    """``w``: the weights' share of the loss (see the module)."""
    if weights_share is not None:
        if isinstance(weights_share, bool) or not isinstance(weights_share, (int, float)) \
                or not 0.0 <= float(weights_share) <= 1.0:
            raise ValueError(f"weights_share={weights_share!r} is not allowed; allowed: a number from 0 to 1, or None")
        return float(weights_share)
    return 1.0 if spec.ptq_spec.mode == "weight-only" else 0.5


def calibration_alternative(spec: QuantSpec) -> str:
    """The other calibration a prior suggests: MSE after min-max (a range that also fits the bulk of the values),
    min-max after a clipping method (nothing clipped)."""
    return "mse" if spec.calibration in ("minmax", "moving-average") else "minmax"


def qat_spec(spec: QuantSpec) -> QuantSpec | None:
    """The QAT counterpart of a static INT8 or INT4 weight-only spec (the default schedule, no post-training
    algorithm, a backend with a QAT flow); None for the other kinds (QAT of INT8 weight-only or dynamic would
    deploy as static INT8: another kind of point)."""
    from qcore.backends.qat_choice import QAT_BACKENDS

    if not ((spec.mode == "static" and spec.precision == "int8")
            or (spec.mode == "weight-only" and spec.precision == "int4")):
        return None
    backend = spec.backend if spec.backend in QAT_BACKENDS else "auto"
    try:
        return spec.replace(mode="qat", backend=backend, equalize=False, bias_correction=False, rounding="nearest",
                            **QAT_DEFAULTS)
    except SpecError:
        return None


def cle_spec(spec: QuantSpec, device: str = "cpu") -> QuantSpec | None:
    """The spec with cross-layer equalization and bias correction, or equalization alone where the backend cannot
    take bias correction's weights; None when it has both already or is QAT."""
    if spec.mode == "qat" or (spec.equalize and spec.bias_correction):
        return None
    for changes in ({"equalize": True, "bias_correction": True}, {"equalize": True}):
        try:
            out = spec.replace(**changes)
        except SpecError:
            continue
        if out != spec and spec_problem(out, device) is None:
            return out
    return None


def _check_points(lost_points) -> float:
    if isinstance(lost_points, bool) or not isinstance(lost_points, (int, float)) or not math.isfinite(lost_points):
        raise ValueError(f"lost_points={lost_points!r} is not allowed; allowed: a finite number of top-1 points")
    return float(lost_points)


def general_fixes(spec: QuantSpec, lost_points: float, weights_share: float | None, *, device: str = "cpu"
                  ) -> list[Fix]:
    """The model-wide fixes of ``spec`` for a loss of ``lost_points`` (FP32 top-1 minus the point's), scored by
    the priors of the module, highest first; none for a float spec or a point that lost nothing."""
    loss = _check_points(lost_points)
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec={spec!r} is not allowed; allowed: a QuantSpec")
    w = weights_part(spec, weights_share)
    if spec.is_float or loss <= 0:
        return []
    lw, la = w * loss, (1 - w) * loss
    why_w = f"{lw:.2f} of the {loss:.2f} points lost are put on the weights" + (
        "" if weights_share is not None else " (not split: an estimate)")
    why_a = f"{la:.2f} of the {loss:.2f} points lost are put on the activations" + (
        "" if weights_share is not None else " (not split: an estimate)")
    out: list[Fix] = []

    def add(what: str, why: str, cause: str, score: float, fix_spec: QuantSpec | None) -> None:
        fix = make_fix(what, why, cause, score, fix_spec, device) if fix_spec is not None else None
        if fix is not None:
            out.append(fix)

    ptq = spec.ptq_spec
    if spec.granularity == "per-tensor":
        add("per-channel weights", f"one scale per tensor; {why_w}", "weights", PRIORS["per-channel"] * lw,
            changed(spec, granularity="per-channel"))
    cle = cle_spec(spec, device)
    if cle is not None:
        prior = PRIORS["cle-per-tensor" if spec.granularity == "per-tensor" else "cle-per-channel"]
        add("cross-layer equalization" + (" + bias correction" if cle.bias_correction else ""), why_w, "weights",
            prior * lw, cle)
    if spec.rounding != "adaround" and spec.mode != "qat":
        add("AdaRound weight rounding", why_w, "weights", PRIORS["adaround"] * lw, changed(spec, rounding="adaround"))
    if ptq.mode == "static" and spec.mode != "qat":
        method = calibration_alternative(spec)
        add(f"{method} calibration", why_a, "activations", PRIORS["calibration"] * la,
            changed(spec, calibration=method))
        if spec.symmetric:
            add("asymmetric activations", why_a, "activations", PRIORS["asymmetric"] * la,
                changed(spec, scheme="asymmetric"))
    qat = qat_spec(spec)
    if qat is not None:
        large = loss >= QAT_LARGE
        add(f"QAT ({qat.qat_epochs:g} epoch of fine-tuning)", f"{loss:.2f} points lost" + (
            "" if large else f" (under {QAT_LARGE:g}: training is worth it for a large loss only)"), "",
            PRIORS["qat-large" if large else "qat-small"] * loss, qat)
    return sorted(out, key=lambda f: -f.score)


def changed(spec: QuantSpec, **changes) -> QuantSpec | None:
    """``spec`` with ``changes``, or None when that is no valid spec or no change (percentile gets 99.99)."""
    if changes.get("calibration") == "percentile" and not spec.percentile:  # the field is 0 off percentile
        changes.setdefault("percentile", 99.99)
    try:
        out = spec.replace(**changes)
    except SpecError:
        return None
    return out if out != spec else None


def _key(fix: Fix) -> str:
    spec = json.dumps(fix.spec.to_dict(), sort_keys=True) if fix.spec is not None else fix.what
    return spec + "|" + json.dumps(fix.config, sort_keys=True, default=str)


def rank_fixes(causes: list[Cause], general: list[Fix]) -> list[Fix]:
    """Every fix of ``causes`` and ``general`` once per spec (and config), highest score first. Among the fixes of
    the causes the highest score wins (the first found among equals); a fix of ``general`` counts only for a spec
    no cause measured: a measured score (what the fix removes on the real tensors) replaces the prior."""
    best: dict[str, Fix] = {}
    order: list[str] = []
    measured = [f for c in causes for f in c.fixes]
    for i, fix in enumerate(measured + list(general)):
        if not isinstance(fix, Fix):
            raise ValueError(f"a fix is a {type(fix).__name__}; allowed: qcore.doctor.fix.Fix")
        k = _key(fix)
        if k not in best:
            order.append(k)
            best[k] = fix
        elif i < len(measured) and fix.score > best[k].score:
            best[k] = fix
    return sorted((best[k] for k in order), key=lambda f: -f.score)
