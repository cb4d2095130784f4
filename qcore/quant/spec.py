"""QuantSpec: one frozen, self-validating description of how to quantize a model.

Every combination lives in the fields of this one object (never in class names). A combination
that cannot exist mathematically (INT4 activations, per-group activation scales) raises
:class:`SpecError` (a ``ValueError``) naming the field, the value and what is allowed, before any
work is done. Which backend runs which kind of spec is the backends' to say
(:func:`qcore.backends.kind_problem`, :func:`qcore.backends.resolve_backend`), not this module's.
``CHOICES`` lists the allowed values of each field; the CLI and the app build their choices from it.

``scheme`` applies to activations in static and dynamic INT8 (weights there are always
symmetric int8, the only kind the CPU int8 kernels take) and to the weights in weight-only
mode (there are no quantized activations).

Float precisions (fp32, fp16, bf16) ignore the integer settings: they are normalised to
``"n/a"`` so that a grid over calibrations does not produce ten identical FP16 runs.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, fields
from typing import Any

from qcore.quant.spec_keep import KEEP_FIELDS, check_keep, keep_label, keep_names
from qcore.quant.spec_ptq import PTQ_DEFAULTS, ROUNDINGS, asks_ptq, check_ptq, ptq_label

__all__ = ["FLOAT_PRECISIONS", "INT_PRECISIONS", "KINDS", "NA", "CHOICES", "LABELS", "GROUP_SIZES", "DEFAULT_GRID",
           "WEIGHT_CALIBRATIONS", "QAT_DEFAULTS", "SpecError", "QuantSpec", "FP32", "expand_grid", "allowed_modes"]

FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")
# What a spec asks of a backend (QuantSpec.kind): a float cast, or one of the three quantization modes.
KINDS = ("float", "static", "dynamic", "weight-only")
INT_PRECISIONS = ("int8", "int4")
NA = "n/a"

CHOICES: dict[str, tuple[str, ...]] = {
    "precision": FLOAT_PRECISIONS + INT_PRECISIONS,
    "granularity": ("per-tensor", "per-channel", "per-group"),
    "calibration": ("minmax", "moving-average", "percentile", "entropy", "mse"),
    "scheme": ("symmetric", "asymmetric"),
    "mode": ("static", "dynamic", "weight-only", "qat"),
    "backend": ("auto", "fx", "pt2e", "torchao", "float", "weight-only", "ort", "openvino", "xnnpack", "pt2e-openvino",
                "tensorrt"),
    "device": ("auto", "cpu", "cuda"),
    "rounding": ROUNDINGS,
}

# Human labels for select boxes and reports.
LABELS = {
    "fp32": "FP32",
    "fp16": "FP16",
    "bf16": "BF16",
    "int8": "INT8",
    "int4": "INT4",
    "minmax": "min-max",
    "moving-average": "moving-average min-max",
    "percentile": "percentile",
    "entropy": "entropy (KL)",
    "mse": "MSE",
}

GROUP_SIZES = (16, 32, 64, 128, 256)
# mode="qat"'s fine-tune and its control: the spec's defaults, the CLI's and the app's help (qcore.qat says why)
QAT_DEFAULTS: dict[str, float | int] = {
    "qat_epochs": 1.0,  # passes over the training split; fractions allowed (0.1: a tenth of the steps)
    "qat_lr_scale": 0.01,  # the baseline recipe's peak learning rate times this (about 1% of it)
    "qat_freeze_bn": 0.3,  # BatchNorm statistics frozen after this fraction of the fine-tune (1: never)
    "qat_freeze_observers": 0.4,  # activation ranges frozen after this fraction (1: never)
    "qat_seed": 0,  # the order of the training images
}
# The grid a sweep measures when nothing else is asked for (the CLI's flags, the Sweep page): FP32 and static INT8
DEFAULT_GRID: dict[str, tuple] = {
    "precision": ("fp32", "int8"),
    "granularity": ("per-channel",),
    "group_size": (64,),
    "calibration": ("minmax",),
    "percentile": (99.99,),
    "scheme": ("asymmetric",),
    "mode": ("static",),
    "backend": ("auto",),
}
# Weights are static: their range is known exactly, so only these methods make sense for them
WEIGHT_CALIBRATIONS = ("minmax", "percentile", "mse")


class SpecError(ValueError):
    """An impossible or malformed QuantSpec; the message names the field and the allowed values."""


def _allowed(values) -> str:
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize: precision, granularity, calibration, scheme, mode, backend, device.

    >>> QuantSpec("int8", granularity="per-channel", calibration="entropy").mode
    'static'
    """

    precision: str = "int8"
    granularity: str = "per-channel"
    group_size: int = 64
    calibration: str = "minmax"
    percentile: float = 99.99
    scheme: str = "asymmetric"
    mode: str = "static"
    backend: str = "auto"
    device: str = "auto"
    # module names (torchvision's, e.g. "features.0.0") left in FP32 while the rest is quantized: a mixed-precision
    # point (qcore.layers); sorted, so the same set is the same spec whatever order it was given in
    keep_float: tuple[str, ...] = ()
    # INT4 weight-only only: module names whose weights are stored in INT8 instead (qcore.quant.spec_keep)
    keep_int8: tuple[str, ...] = ()
    # mode="qat" only (set to 0 for every other mode; see QAT_DEFAULTS and qcore.qat)
    qat_epochs: float = QAT_DEFAULTS["qat_epochs"]
    qat_lr_scale: float = QAT_DEFAULTS["qat_lr_scale"]
    qat_freeze_bn: float = QAT_DEFAULTS["qat_freeze_bn"]
    qat_freeze_observers: float = QAT_DEFAULTS["qat_freeze_observers"]
    qat_seed: int = QAT_DEFAULTS["qat_seed"]
    # post-training algorithms (qcore.quant.spec_ptq, run by qcore.ptq): CLE, bias correction, AdaRound and its numbers
    equalize: bool = PTQ_DEFAULTS["equalize"]
    bias_correction: bool = PTQ_DEFAULTS["bias_correction"]
    rounding: str = PTQ_DEFAULTS["rounding"]
    adaround_iters: int = PTQ_DEFAULTS["adaround_iters"]
    adaround_images: int = PTQ_DEFAULTS["adaround_images"]

    def __post_init__(self) -> None:
        for name in ("precision", "backend", "device"):
            self._check_choice(name)
        self._check_keep_float()
        self._check_ptq()
        if self.precision in FLOAT_PRECISIONS:
            if self.mode == "qat":
                raise SpecError(
                    f"mode='qat' is not allowed with precision={self.precision!r}: a float cast has no "
                    "quantization ranges to train; allowed: precision int8 (QAT of static INT8), int4 (QAT of INT4 "
                    "weight-only)"
                )
            # Integer settings mean nothing for a float cast: normalise them.
            for name in ("granularity", "calibration", "scheme", "mode"):
                object.__setattr__(self, name, NA)
            object.__setattr__(self, "group_size", 0)
            object.__setattr__(self, "percentile", 0.0)
            self._check_qat()
            return
        for name in ("granularity", "calibration", "scheme", "mode"):
            self._check_choice(name)
        self._check_numbers()
        self._check_combination()
        self._check_qat()

    # -- validation ------------------------------------------------------------------------------

    def _check_choice(self, name: str) -> None:
        value = getattr(self, name)
        if value not in CHOICES[name]:
            raise SpecError(f"{name}={value!r} is not allowed; allowed: {_allowed(CHOICES[name])}")

    def _check_keep_float(self) -> None:
        """keep_float and keep_int8 as sorted tuples of names, emptied for a float precision (nothing is quantized,
        so nothing is kept out of it); keep_int8 on INT4 weight-only only, no layer in both (qcore.quant.spec_keep)."""
        try:
            for name in KEEP_FIELDS:
                names = keep_names(getattr(self, name), name)
                object.__setattr__(self, name, () if self.precision in FLOAT_PRECISIONS else names)
            check_keep(self.precision, self.mode, self.keep_float, self.keep_int8)
        except ValueError as exc:
            raise SpecError(str(exc)) from None

    def _check_ptq(self) -> None:  # qcore.quant.spec_ptq's rules
        try:
            values = check_ptq({k: getattr(self, k) for k in PTQ_DEFAULTS}, self.precision, self.mode)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _check_numbers(self) -> None:
        if self.granularity == "per-group":
            if not isinstance(self.group_size, int) or self.group_size not in GROUP_SIZES:
                raise SpecError(f"group_size={self.group_size!r} is not allowed; allowed: {_allowed(GROUP_SIZES)}")
        else:
            object.__setattr__(self, "group_size", 0)
        if self.calibration == "percentile":
            if not isinstance(self.percentile, (int, float)) or not 50.0 < float(self.percentile) <= 100.0:
                raise SpecError(f"percentile={self.percentile!r} is not allowed; allowed: a number in (50, 100]")
            object.__setattr__(self, "percentile", float(self.percentile))
        else:
            object.__setattr__(self, "percentile", 0.0)

    def _check_qat(self) -> None:
        """mode="qat": INT8 static-like specs only, and schedule numbers in range; other modes zero the fields
        (a grid over qat_epochs does not make ten identical static runs)."""
        if self.mode != "qat":
            for name in QAT_DEFAULTS:
                object.__setattr__(self, name, 0 if name == "qat_seed" else 0.0)
            return
        if self.precision not in ("int8", "int4"):
            raise SpecError(
                f"mode='qat' is not allowed with precision={self.precision!r}; allowed: int8 (QAT of static "
                "INT8), int4 (QAT of INT4 weight-only)"
            )
        for name, low, high in (("qat_epochs", 0.0, 100.0), ("qat_lr_scale", 0.0, 10.0),
                                ("qat_freeze_bn", 0.0, 1.0), ("qat_freeze_observers", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < float(value) <= high:
                raise SpecError(f"{name}={value!r} is not allowed; allowed: a number in ({low:g}, {high:g}]")
            object.__setattr__(self, name, float(value))
        if isinstance(self.qat_seed, bool) or not isinstance(self.qat_seed, int) or not 0 <= self.qat_seed < 2**31:
            raise SpecError(f"qat_seed={self.qat_seed!r} is not allowed; allowed: an integer in [0, 2**31)")

    def _check_combination(self) -> None:
        p, g, c, m = self.precision, self.granularity, self.calibration, self.mode
        if m == "qat" and p not in ("int8", "int4"):
            return  # _check_qat names what is wrong
        if m == "qat" and p == "int4":  # QAT of INT4 weight-only: the weight-only rules below apply
            m = "weight-only"
        elif m == "qat" and g == "per-group":
            raise SpecError(
                "granularity='per-group' is not allowed in mode='qat': it trains INT8 static quantization, "
                "whose kernels take one scale per tensor or per output channel; allowed: per-tensor, per-channel"
            )
        if p == "int4" and m != "weight-only":
            raise SpecError(
                f"mode={m!r} is not allowed with precision='int4': no INT4 activation kernels exist "
                "here; allowed: weight-only, qat (QAT of INT4 weight-only)"
            )
        if m == "static" and g == "per-group":
            raise SpecError(
                "granularity='per-group' is not allowed in static INT8: activations and the int8 "
                "kernels take one scale per tensor or per output channel; allowed: per-tensor, "
                "per-channel (or mode='weight-only' for per-group weights)"
            )
        if m == "dynamic":
            if g == "per-group":
                raise SpecError(
                    "granularity='per-group' is not allowed in dynamic INT8; allowed: per-tensor, per-channel"
                )
            if c != "minmax":
                raise SpecError(
                    f"calibration={c!r} is not allowed in dynamic mode: activation ranges are taken "
                    "from each batch at run time (min-max), so there is nothing to calibrate; "
                    "allowed: minmax"
                )
        if m == "weight-only" and c not in WEIGHT_CALIBRATIONS:
            raise SpecError(
                f"calibration={c!r} is not allowed in weight-only mode: weights are fixed, so their "
                f"clipping range is chosen once; allowed: {_allowed(WEIGHT_CALIBRATIONS)}"
            )

    # -- conveniences ----------------------------------------------------------------------------

    is_float = property(lambda self: self.precision in FLOAT_PRECISIONS)

    @property
    def kind(self) -> str:
        """What it asks of a backend (:data:`KINDS`): ``"float"`` for a cast, else its mode."""
        return "float" if self.is_float else self.mode

    @property
    def ptq_spec(self) -> QuantSpec:
        """What a QAT spec deploys as, and what its ``ptq_top1`` is measured with: the same spec in static
        mode (INT8) or weight-only mode (INT4: no INT4 activation kernels exist here), trained weights and ranges
        aside (any other spec is its own)."""
        if self.mode != "qat":
            return self
        return self.replace(mode="weight-only" if self.precision == "int4" else "static")

    @property
    def is_reference(self) -> bool:
        """Torch FP32: the baseline every other spec of a sweep is measured against (FP32 on ONNX Runtime or
        OpenVINO is a variant, measured against it like any other)."""
        return self.precision == "fp32" and self.backend in ("auto", "float")

    @property
    def bits(self) -> int:
        return {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}[self.precision]

    @property
    def symmetric(self) -> bool:
        return self.scheme == "symmetric"

    def label(self) -> str:
        """A short human name: ``INT8 per-channel entropy (KL) sym static``, ``FP32 [ort]``.

        :func:`qcore.quant.spec_text.parse_spec` reads it back: ``parse_spec(s.label(), device=s.device) == s`` (the
        device is the sweep's, so it is left out)."""
        parts = [LABELS[self.precision]]
        if not self.is_float:
            parts.append(self.granularity + (f"({self.group_size})" if self.granularity == "per-group" else ""))
            cal = LABELS[self.calibration]
            if self.calibration == "percentile":
                short = f"{self.percentile:g}"  # 99.99, not 99.99000000000001; repr when g would round
                cal += f"({short if float(short) == self.percentile else repr(self.percentile)})"
            parts += [cal, "sym" if self.symmetric else "asym", self.mode]
            if self.mode == "qat":  # the fine-tune's length (qcore.quant.spec_text reads "qat(0.5 ep)" back)
                parts[-1] += f"({self.qat_epochs:g} ep)"
        if self.backend != "auto":
            parts.append(f"[{self.backend}]")
        parts += ptq_label(self)
        parts += [keep_label(getattr(self, name), precision) for name, precision in KEEP_FIELDS.items()
                  if getattr(self, name)]
        return " ".join(parts)

    def keep_float_label(self) -> str:
        """The layers kept in FP32, short and stable: ``+fp32(fc)`` for one, ``+fp32(3 layers #1a2b)`` for more
        (the hash of the sorted names tells two sets of three apart); "" when none."""
        return keep_label(self.keep_float, "fp32")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in KEEP_FIELDS:  # specs without kept layers keep the dict (and stored keys) they always had
            d[name] = list(getattr(self, name))
            if not d[name]:
                del d[name]
        for name in PTQ_DEFAULTS if not self.asks_ptq else ():  # nor those that ask for no post-training algorithm
            del d[name]
        return d

    @property
    def asks_ptq(self) -> bool:  # cross-layer equalization, bias correction or AdaRound (qcore.ptq)
        return asks_ptq(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantSpec:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"unknown QuantSpec field(s): {', '.join(unknown)}; allowed: {_allowed(sorted(names))}")
        return cls(**data)

    def replace(self, **changes: Any) -> QuantSpec:
        return dataclasses.replace(self, **changes)


FP32 = QuantSpec("fp32")


def allowed_modes(precision: str, **fields: Any) -> list[str]:
    """The modes a spec of ``precision`` (and the other ``fields``, when given) can have, in :data:`CHOICES`
    order, by this module's rules: ``allowed_modes("int4")`` is ``["weight-only", "qat"]``; a float precision has
    none (its mode is ``n/a``). With fields that no mode fits (``calibration="entropy"`` and INT4), it
    falls back to the precision's own modes."""
    if precision in FLOAT_PRECISIONS:
        return []
    for given in (fields, {}):
        modes = []
        for mode in CHOICES["mode"]:
            try:
                QuantSpec(**{**given, "precision": precision, "mode": mode})
            except (SpecError, TypeError):
                continue
            modes.append(mode)
        if modes:
            return modes
    return []


def expand_grid(**options: list[Any]) -> tuple[list[QuantSpec], list[tuple[dict[str, Any], str]]]:
    """Every combination of the given field values.

    Returns the valid specs (duplicates removed, order kept) and the skipped combinations,
    each with the reason. ``expand_grid(precision=["int8", "int4"], mode=["static"])`` gives one
    spec and skips INT4 static. Torch FP32 with ``mode="qat"`` is no skip: a float precision has no mode, and
    FP32 is the baseline every sweep measures first (FP16 QAT, or FP32 on ONNX Runtime, is skipped with why).
    """
    names = list(options)
    specs: list[QuantSpec] = []
    skipped: list[tuple[dict[str, Any], str]] = []
    seen: set[QuantSpec] = set()
    for values in itertools.product(*(options[n] for n in names)):
        combo = dict(zip(names, values))
        try:
            spec = QuantSpec(**combo)
        except SpecError as exc:
            spec = _baseline_of_qat(combo)
            if spec is None:
                skipped.append((combo, str(exc)))
                continue
        except TypeError as exc:
            raise SpecError(str(exc)) from exc
        if spec not in seen:
            seen.add(spec)
            specs.append(spec)
    return specs, skipped


def _baseline_of_qat(combo: dict[str, Any]) -> QuantSpec | None:
    """Torch FP32 when ``combo`` is FP32 with ``mode="qat"`` (the baseline: a float precision has no mode), else
    None."""
    if combo.get("precision") != "fp32" or combo.get("mode") != "qat":
        return None
    try:
        spec = QuantSpec(**{**combo, "mode": "static"})
    except (SpecError, TypeError):
        return None
    return spec if spec.is_reference else None
