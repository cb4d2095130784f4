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

__all__ = ["FLOAT_PRECISIONS", "INT_PRECISIONS", "KINDS", "NA", "CHOICES", "LABELS", "GROUP_SIZES", "DEFAULT_GRID",
           "WEIGHT_CALIBRATIONS", "SpecError", "QuantSpec", "FP32", "expand_grid"]

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
    "mode": ("static", "dynamic", "weight-only"),
    "backend": ("auto", "fx", "pt2e", "torchao", "float", "weight-only", "ort", "openvino", "xnnpack"),
    "device": ("auto", "cpu", "cuda"),
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
# The grid a sweep measures when nothing else is asked for: ``python -m qcore sweep``'s flags and the app's
# Sweep page start from it (one value per field but precision: the FP32 baseline and static INT8).
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
# Weights are static: their range is known exactly, so only these methods make sense for them.
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

    def __post_init__(self) -> None:
        for name in ("precision", "backend", "device"):
            self._check_choice(name)
        if self.precision in FLOAT_PRECISIONS:
            # Integer settings mean nothing for a float cast: normalise them.
            for name in ("granularity", "calibration", "scheme", "mode"):
                object.__setattr__(self, name, NA)
            object.__setattr__(self, "group_size", 0)
            object.__setattr__(self, "percentile", 0.0)
            return
        for name in ("granularity", "calibration", "scheme", "mode"):
            self._check_choice(name)
        self._check_numbers()
        self._check_combination()

    # -- validation ------------------------------------------------------------------------------

    def _check_choice(self, name: str) -> None:
        value = getattr(self, name)
        if value not in CHOICES[name]:
            raise SpecError(f"{name}={value!r} is not allowed; allowed: {_allowed(CHOICES[name])}")

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

    def _check_combination(self) -> None:
        p, g, c, m = self.precision, self.granularity, self.calibration, self.mode
        if p == "int4" and m != "weight-only":
            raise SpecError(
                f"mode={m!r} is not allowed with precision='int4': no INT4 activation kernels exist "
                "here; allowed: weight-only"
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

    @property
    def is_float(self) -> bool:
        return self.precision in FLOAT_PRECISIONS

    @property
    def kind(self) -> str:
        """What it asks of a backend (:data:`KINDS`): ``"float"`` for a cast, else its mode."""
        return "float" if self.is_float else self.mode

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
        """A short human name: ``INT8 per-channel entropy sym static``."""
        if self.is_float:
            return LABELS[self.precision]
        parts = [LABELS[self.precision], self.granularity]
        if self.granularity == "per-group":
            parts[-1] += f"({self.group_size})"
        cal = LABELS[self.calibration]
        if self.calibration == "percentile":
            cal += f"({self.percentile:g})"
        parts += [cal, "sym" if self.symmetric else "asym", self.mode]
        if self.backend != "auto":
            parts.append(f"[{self.backend}]")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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


def expand_grid(**options: list[Any]) -> tuple[list[QuantSpec], list[tuple[dict[str, Any], str]]]:
    """Every combination of the given field values.

    Returns the valid specs (duplicates removed, order kept) and the skipped combinations,
    each with the reason. ``expand_grid(precision=["int8", "int4"], mode=["static"])`` gives one
    spec and skips INT4 static.
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
            skipped.append((combo, str(exc)))
            continue
        except TypeError as exc:
            raise SpecError(str(exc)) from exc
        if spec not in seen:
            seen.add(spec)
            specs.append(spec)
    return specs, skipped
