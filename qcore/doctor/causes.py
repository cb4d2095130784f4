"""Why there: for each culprit (:mod:`qcore.doctor.where`) the causes measured on its real tensors
(:mod:`qcore.doctor.observe`), each with its evidence in words and numbers and the fixes that answer it.

The causes (:data:`qcore.doctor.fix.CAUSES`) and when one is claimed:

- ``channel-spread``: a per-tensor weight whose widest output channel's range is at least
  :data:`CHANNEL_SPREAD_MIN` times the median channel's (the median channel then uses a quarter of the codes or
  fewer). Fixes: per-channel weights, cross-layer equalization (+ bias correction).
- ``outliers``: fewer than :data:`OUTLIER_SHARE_MAX` of the values lie beyond half the range (most values use
  less than half the codes); for weights, of their row's range; for activations, of the calibrated range on the
  calibration images. Fixes: another calibration (the weights' under weight-only, the activations' under static),
  cross-layer equalization (weights).
- ``relu-symmetric``: a static INT8 activation whose calibration values are all >= 0 under a symmetric scheme
  (the codes below the zero point are never used). Fix: asymmetric activations.
- ``calib-exceeded``: held-out images clip at least :data:`CLIP_MIN` of their values and at least twice the
  share the calibration images clip (a value clips when it lies over half a step outside the range). Fixes: more
  calibration images (4x), another calibration.
- ``calib-small``: with calibration draws measured (``row.calib_draws > 1``), a top-1 spread of at least
  :data:`DRAW_STD_MIN` points. Fix: more calibration images. With one draw it is not claimed, and the evidence
  of the calibration causes says the spread was not measured.
- ``sensitive``: a culprit with a gain but none of the above: keeping it in FP32 is the fix measured.

Every culprit's causes also carry "keep it in FP32" (``keep_float`` with its name; not for the model input, whose
quantizer cannot be kept).

The score of a fix is the top-1 points it is expected to win back, from measured numbers (``L``: the points lost,
``-row.top1_delta``; ``g``: a culprit's gain alone in FP32, or ``L`` shared equally among the culprits when the
Layers job had no accuracy columns):

- keep X in FP32: ``g`` of X;
- the parts of the loss: a layer culprit's activation part ``s_x = e_x / (e_w + e_x)`` (``e_x`` its input's
  relative MSE on the held-out images, ``e_w`` its weight's, averaged over the output channels), 0 under
  weight-only, 1 for an activation quantizer; the weights' share ``w`` is the split's when given, 1 under
  weight-only, else ``sum g (1 - s_x) / sum g`` over the culprits; ``L_w = w L``, ``L_a = (1 - w) L``;
- weight fixes (model-wide specs: per-channel, equalization, the weights' calibration): ``L_w r``, ``r`` the share
  of the weights' quantization error the fix removes, the error summed over every quantized layer (BatchNorm
  folded; each layer's relative MSE averaged over its output channels, so that a channel left a few codes counts);
- activation fixes (model-wide: asymmetric, another calibration): ``sum g s_x r`` over the measured tensors (one
  tensor read at two culprits counts once), ``r = 1 - e_fix / e_x`` on the held-out images (negative where the fix
  does worse), at most ``L_a``;
- more calibration images: ``sum g s_x c / 2`` over the tensors held-out images clip (``c`` the share of their
  held-out error made by clipped values; half, as more images of the same kind widen the range toward the
  held-out extremes, not to them), at most ``L_a``; for ``calib-small``, half of the best draw's top-1 over the
  mean (the spread when no best is stored).

:func:`general_fixes` adds the model-wide fixes with prior scores (:mod:`qcore.doctor.general`); in
:func:`rank_fixes` a score measured here replaces the prior of the same spec.
"""

from __future__ import annotations

import math
from dataclasses import replace

from qcore.doctor.fix import Cause, Fix
from qcore.doctor.general import (
    calibration_alternative,
    changed,
    cle_spec,
    general_fixes,
    make_fix,
    rank_fixes,
    spec_problem,
)
from qcore.doctor.observe import (
    ActStats,
    act_stats,
    cle_noise,
    held_out,
    model_weights,
    removed,
    weight_noise,
    weight_stats,
)
from qcore.doctor.where import Culprit
from qcore.quant.spec import WEIGHT_CALIBRATIONS, QuantSpec

__all__ = ["CHANNEL_SPREAD_MIN", "OUTLIER_SHARE_MAX", "CLIP_MIN", "DRAW_STD_MIN", "HELD_OUT_IMAGES", "MORE_CALIB",
           "find_causes", "lost_points", "draw_note", "general_fixes", "rank_fixes", "spec_problem"]

CHANNEL_SPREAD_MIN = 4.0
OUTLIER_SHARE_MAX = 0.01
CLIP_MIN = 1e-4
DRAW_STD_MIN = 0.2
HELD_OUT_IMAGES = 512
MORE_CALIB = 4  # "more calibration images": this many times the config's


def lost_points(row, found: list[Culprit]) -> float:
    """The points the point lost: FP32 top-1 minus its top-1 (``-row.top1_delta``); without a row, the sum of
    the culprits' measured gains (an estimate of the loss at these places)."""
    if row is not None and row.top1_delta is not None:
        return -float(row.top1_delta)
    return float(sum(c.gain for c in found if c.gain is not None and c.gain > 0))


def draw_note(row) -> str:
    """What the row says of the calibration draws, for the evidence: "" when the spread was measured."""
    if row is not None and (row.calib_draws or 1) > 1 and row.top1_std is not None:
        return ""
    return "the draw spread was not measured (one calibration draw: run with calib_draws > 1 to measure it)"


class _Doctor:
    """One diagnosis: the measurements, the parts of the loss, and the fixes' scores."""

    def __init__(self, p, spec: QuantSpec, found: list[Culprit], row, weights_share, held_out_n: int) -> None:
        from qcore.layers.errors import deployed

        self.p, self.spec, self.ptq, self.culprits, self.row = p, spec, spec.ptq_spec, found, row
        self.device = getattr(p, "device", "cpu")
        model = p.loaded.model
        self.names = model_weights(model, self.ptq)
        unknown = [c.name for c in found if c.kind == "layer" and c.name not in self.names]
        if unknown:
            raise ValueError(f"culprit {unknown[0]!r} is not a layer {spec.label()} quantizes in this model; allowed: "
                             f"{', '.join(self.names[:8])}{' ...' if len(self.names) > 8 else ''}")
        self.lost = lost_points(row, found)
        self.reference = deployed(model, self.ptq)
        self.base = weight_noise(self.reference, self.names, spec)
        modules = dict(self.reference.named_modules())
        self.wstats = {c.name: weight_stats(c.name, modules[c.name].weight, spec, self.base.get(c.name, math.nan))
                       for c in found if c.kind == "layer" and c.name in modules}
        self.astats: dict[str, ActStats] = {}
        self.notes: list[str] = []
        if self.ptq.mode == "static" and found:
            wants = [c.name for c in found]
            try:
                self.astats = act_stats(model, spec, p.calib, held_out(p, held_out_n), p.example, wants)
            except Exception as exc:  # a model torch.ao FX cannot trace: the weights' causes only
                self.notes.append(f"activations not measured: torch.ao FX could not prepare the model "
                                  f"({type(exc).__name__})")
        self.gain = {c.name: (c.gain if c.gain is not None else (self.lost / len(found) if found else 0.0))
                     for c in found}
        self.s_x = {c.name: self._s_x(c) for c in found}
        if weights_share is not None:
            self.w = float(weights_share)
        elif self.ptq.mode == "weight-only":
            self.w = 1.0
        else:
            total = sum(max(0.0, self.gain[c.name]) for c in found)
            self.w = (sum(max(0.0, self.gain[c.name]) * (1 - self.s_x[c.name]) for c in found) / total
                      if total > 0 else 0.5)
        self.l_w, self.l_a = self.w * self.lost, (1 - self.w) * self.lost
        self.act_scores = self._act_scores()
        self.more_score = self._more_score()
        self._weight_r: dict[str, tuple[float, QuantSpec, str]] | None = None

    def _s_x(self, c: Culprit) -> float:
        if c.kind == "activation":
            return 1.0
        if self.ptq.mode == "weight-only":
            return 0.0
        st, e_w = self.astats.get(c.name), self.base.get(c.name)
        if st is None or e_w is None or not math.isfinite(st.rel_mse):
            return 0.5  # not measured
        return st.rel_mse / (st.rel_mse + e_w) if st.rel_mse + e_w > 0 else 0.5

    def _act_scores(self) -> dict[str, float]:
        """Each activation alternative's model-wide score (see the module), by its key."""
        parts: dict[str, tuple[float, ActStats]] = {}  # one tensor read at two culprits counts once, its largest
        for name, st in self.astats.items():
            part = self.gain.get(name, 0.0) * self.s_x.get(name, 1.0)
            if st.rel_mse > 0 and (st.source not in parts or part > parts[st.source][0]):
                parts[st.source] = (part, st)
        sums: dict[str, float] = {}
        for part, st in parts.values():
            for key, err in st.alternatives.items():
                sums[key] = sums.get(key, 0.0) + part * (1.0 - err / st.rel_mse)
        return {k: max(0.0, min(v, self.l_a) if self.row is not None else v) for k, v in sums.items()}

    def _more_score(self) -> float:
        parts: dict[str, float] = {}
        for name, st in self.astats.items():
            if _exceeded(st):
                part = self.gain.get(name, 0.0) * self.s_x.get(name, 1.0) * st.clip_noise_share / 2
                parts[st.source] = max(part, parts.get(st.source, 0.0))
        total = sum(parts.values())
        return min(total, self.l_a) if self.row is not None else total

    def weight_fixes(self) -> dict[str, tuple[float, QuantSpec, str]]:
        """Model-wide weight fixes measured over every layer: key -> (r, spec, what)."""
        if self._weight_r is None:
            out = {}
            spec = self.spec
            if spec.granularity == "per-tensor" and (s := changed(spec, granularity="per-channel")) is not None:
                out["per-channel"] = (removed(self.base, weight_noise(self.reference, self.names, s)), s,
                                      "per-channel weights")
            if self.ptq.mode == "weight-only":
                for method in WEIGHT_CALIBRATIONS:
                    if method != spec.calibration and (s := changed(spec, calibration=method)) is not None:
                        out[f"weights:{method}"] = (removed(self.base, weight_noise(self.reference, self.names, s)), s,
                                                    f"{method} calibration of the weights")
            cle = cle_spec(spec, self.device)
            if cle is not None and (noise := cle_noise(self.p.loaded.model, self.names, spec)) is not None:
                out["cle"] = (removed(self.base, noise), cle, "cross-layer equalization"
                              + (" + bias correction" if cle.bias_correction else ""))
            self._weight_r = out
        return self._weight_r

    def weight_fix(self, key: str, cause: str, why: str) -> Fix | None:
        found = self.weight_fixes().get(key)
        if found is None:
            return None
        r, spec, what = found
        n = len(self.base)
        why = (f"{why}; it removes {max(r, 0):.0%} of the weights' quantization error summed over {n} "
               f"layer{'s' if n != 1 else ''}, on the {self.l_w:.2f} points put on the weights")
        return make_fix(what, why, cause, self.l_w * r, spec, self.device)

    def act_fix(self, key: str, cause: str, why: str) -> Fix | None:
        score = self.act_scores.get(key)
        if score is None:
            return None
        changes = {"scheme": "asymmetric"} if key == "asymmetric" else {"calibration": key}
        spec = changed(self.spec, **changes)
        what = "asymmetric activations" if key == "asymmetric" else f"{key} calibration"
        return make_fix(what, f"{why}; measured on the held-out images at the culprits", cause, score, spec,
                        self.device) if spec is not None else None

    def calibrations(self, cause: str, why: str) -> list[Fix | None]:
        """Another calibration: the one measured best, and the one :func:`general_fixes` would guess (measured
        too, so that its measured score replaces the guess)."""
        keys = [k for k in self.act_scores if k != "asymmetric"]
        if not keys:
            return []
        best = max(keys, key=lambda k: self.act_scores[k])
        return [self.act_fix(k, cause, why) for k in dict.fromkeys([best, calibration_alternative(self.spec)])
                if k in self.act_scores]

    def more_images(self, cause: str, why: str, score: float) -> Fix | None:
        from qcore.guards.limits import LIMITS

        n = int(getattr(self.p.config, "calib_size", 256))
        more = min(n * MORE_CALIB, int(LIMITS["calib_size"].hi))
        if more <= n:
            return None
        return make_fix(f"{more} calibration images ({MORE_CALIB}x)", why, cause, score, self.spec, self.device,
                        {"calib_size": more})

    def keep_fix(self, c: Culprit) -> Fix | None:
        if c.row.cannot_keep:
            return None
        spec = changed(self.spec, keep_float=tuple(self.spec.keep_float) + (c.name,))
        if spec is None:
            return None
        measured = c.gain is not None
        why = (f"only {c.name} in FP32 wins back {self.gain[c.name]:.2f} points" if measured else
               f"{c.name} ranked by {c.metric}; its gain was not measured ({self.lost:.2f} points shared among "
               f"{len(self.culprits)} culprits)")
        return make_fix(f"keep {c.name} ({c.role}) in FP32", why, "", self.gain[c.name], spec, self.device)


def _exceeded(st: ActStats) -> bool:
    return st.calibrated and st.eval_clip >= max(CLIP_MIN, 2 * st.calib_clip)


def _cause(key: str, where: str, evidence: str, numbers: dict, fixes: list) -> Cause:
    fixes = sorted((f for f in fixes if f is not None), key=lambda f: -f.score)
    return Cause(key, where, evidence, {k: float(v) for k, v in numbers.items()}, fixes)


def _weight_causes(d: _Doctor, c: Culprit) -> list[Cause]:
    ws = d.wstats.get(c.name)
    if ws is None:
        return []
    out = []
    weights_granularity = d.spec.granularity
    if weights_granularity == "per-tensor" and ws.ratio >= CHANNEL_SPREAD_MIN:
        ev = (f"{c.name} ({c.role}): one scale for the whole weight (as deployed), set by channel {ws.widest} "
              f"whose range {ws.widest_range:.3g} is {ws.ratio:.1f}x the median channel's ({ws.median_range:.3g}, "
              f"{ws.channels} channels): the median channel uses about {1 / ws.ratio:.0%} of the codes")
        out.append(_cause("channel-spread", c.name, ev,
                          {"ratio": ws.ratio, "widest_range": ws.widest_range, "median_range": ws.median_range,
                           "widest_channel": ws.widest, "channels": ws.channels},
                          [d.weight_fix("per-channel", "channel-spread", f"max/median channel range {ws.ratio:.1f}"),
                           d.weight_fix("cle", "channel-spread", f"max/median channel range {ws.ratio:.1f}")]))
    if ws.outlier_share < OUTLIER_SHARE_MAX:
        unit = weights_granularity.removeprefix("per-")
        which = "the tensor" if ws.rows == 1 else f"{unit} {ws.row} of {ws.rows}"
        ev = (f"{c.name} ({c.role}): {ws.outlier_share:.2%} of the values of {which} lie beyond half its range; "
              f"the largest |w| is {ws.range_over_p9999:.2f}x the 99.99th percentile: a few values set the range")
        why = f"{ws.outlier_share:.2%} of the values beyond half the range"
        fixes = [d.weight_fix(f"weights:{m}", "outliers", why) for m in WEIGHT_CALIBRATIONS]
        fixes.append(d.weight_fix("cle", "outliers", why))
        out.append(_cause("outliers", c.name, ev, {"share_beyond_half": ws.outlier_share, "row": ws.row,
                                                   "range_over_p9999": ws.range_over_p9999}, fixes))
    return out


def _act_causes(d: _Doctor, c: Culprit) -> list[Cause]:
    st = d.astats.get(c.name)
    if st is None or not st.calibrated:
        return []
    where = c.name if c.kind == "activation" else f"{c.name} (its input)"
    note = draw_note(d.row)
    note = f"; {note}" if note else ""
    out = []
    base = {"lo": st.lo, "hi": st.hi, "scale": st.scale, "zero_point": st.zero_point}
    if d.spec.symmetric and st.calib_min >= 0:
        ev = (f"{where}: every value on the calibration images is >= 0 (min {st.calib_min:.3g}, "
              f"{st.calib_values} values) and the symmetric scheme puts the zero point at {st.zero_point} of "
              f"{st.qmin}..{st.qmax}: only {st.codes_used:.0%} of the codes can be used")
        out.append(_cause("relu-symmetric", c.name, ev, {**base, "min": st.calib_min, "codes_used": st.codes_used},
                          [d.act_fix("asymmetric", "relu-symmetric", f"min {st.calib_min:.3g} >= 0, symmetric")]))
    if st.outlier_share < OUTLIER_SHARE_MAX:
        ev = (f"{where}: {st.outlier_share:.2%} of the calibration values lie beyond half the calibrated range "
              f"[{st.lo:.3g}, {st.hi:.3g}]; the range is {st.range_over_p9999:.2f}x the 99.99th percentile of "
              f"|x|{note}")
        out.append(_cause("outliers", c.name, ev, {**base, "share_beyond_half": st.outlier_share,
                                                   "range_over_p9999": st.range_over_p9999},
                          d.calibrations("outliers", f"{st.outlier_share:.2%} beyond half the range")))
    if _exceeded(st):
        why = f"held-out clipping {st.eval_clip:.3%} vs {st.calib_clip:.3%} on the calibration images"
        ev = (f"{where}: {st.eval_clip:.3%} of the held-out values ({st.eval_values}) fall outside the calibrated "
              f"range [{st.lo:.3g}, {st.hi:.3g}] vs {st.calib_clip:.3%} of the calibration images' "
              f"({st.calib_values}); clipped values make {st.clip_noise_share:.0%} of the held-out error{note}")
        out.append(_cause("calib-exceeded", c.name, ev,
                          {**base, "eval_clip": st.eval_clip, "calib_clip": st.calib_clip,
                           "eval_values": st.eval_values, "calib_values": st.calib_values,
                           "clip_noise_share": st.clip_noise_share},
                          [d.more_images("calib-exceeded", why, d.more_score),
                           *d.calibrations("calib-exceeded", why)]))
    return out


def _draw_cause(d: _Doctor) -> Cause | None:
    row = d.row
    if row is None or (row.calib_draws or 1) <= 1 or row.top1_std is None or row.top1_std < DRAW_STD_MIN:
        return None
    top = row.top1_max
    score = (top - row.top1) / 2 if top is not None and row.top1 is not None else row.top1_std
    ev = (f"top-1 over {row.calib_draws} calibration draws of {getattr(d.p.config, 'calib_size', '?')} images: "
          f"std {row.top1_std:.2f} points" + (f" (min {row.top1_min:.2f}, max {top:.2f})" if top is not None
                                              and row.top1_min is not None else ""))
    numbers = {"draws": row.calib_draws, "top1_std": row.top1_std}
    if top is not None and row.top1_min is not None:
        numbers.update(top1_min=row.top1_min, top1_max=top)
    return _cause("calib-small", "", ev, numbers,
                  [d.more_images("calib-small", f"draw spread {row.top1_std:.2f} points", score)])


def find_causes(p, spec: QuantSpec, culprits: list[Culprit], *, row=None, weights_share: float | None = None,
                held_out_images: int = HELD_OUT_IMAGES) -> list[Cause]:
    """The measured causes at each culprit (and the draws' spread of ``row``), worst culprit first, each with its
    evidence and fixes (see the module). ``p`` is a :class:`qcore.runs.sweep.Prepared` (the FP32 model, the
    calibration and evaluation batches); ``row`` the point's Result (its top-1 loss and draws); ``weights_share``
    the split's share of the loss on the weights (else estimated)."""
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec={spec!r} is not allowed; allowed: a QuantSpec")
    if spec.is_float:
        raise ValueError(f"{spec.label()} quantizes nothing: there is no cause to find; allowed: an INT8 or INT4 spec")
    bad = [c for c in culprits if not isinstance(c, Culprit)]
    if bad:
        raise ValueError(f"culprits hold {type(bad[0]).__name__}; allowed: Culprit (qcore.doctor.where.culprits)")
    if isinstance(held_out_images, bool) or not isinstance(held_out_images, int) or held_out_images < 1:
        raise ValueError(f"held_out_images={held_out_images!r} is not allowed; allowed: an integer of at least 1")
    if weights_share is not None and (isinstance(weights_share, bool) or not isinstance(weights_share, (int, float))
                                      or not 0 <= weights_share <= 1):
        raise ValueError(f"weights_share={weights_share!r} is not allowed; allowed: a number from 0 to 1, or None")
    if row is not None and lost_points(row, culprits) <= 0:
        return []  # nothing lost: nothing to explain
    d = _Doctor(p, spec, list(culprits), row, weights_share, held_out_images)
    out: list[Cause] = []
    for c in d.culprits:
        here = (_weight_causes(d, c) if c.kind == "layer" else []) + _act_causes(d, c)
        keep = d.keep_fix(c)
        if not here and d.gain[c.name] > 0:
            ev = (f"{c.name} ({c.role}): only it in FP32 wins back {d.gain[c.name]:.2f} points"
                  if c.gain is not None else f"{c.name} ({c.role}) ranks among the worst by {c.metric}")
            ev += "; none of the measured causes (channel spread, outliers, zeros under a symmetric scheme, " \
                  "held-out clipping) is found there"
            here = [_cause("sensitive", c.name, ev, {"gain": d.gain[c.name]}, [])]
        for cause in here:
            if keep is not None:
                cause.fixes = sorted([*cause.fixes, replace(keep, cause=cause.cause)], key=lambda f: -f.score)
            if d.notes:
                cause.evidence += "; " + "; ".join(d.notes)
        out += here
    if (draws := _draw_cause(d)) is not None:
        out.append(draws)
    return out
