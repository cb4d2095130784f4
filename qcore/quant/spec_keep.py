"""The layers a spec keeps in higher precision: ``QuantSpec.keep_float`` and ``QuantSpec.keep_int8``.

A mixed-precision point (:mod:`qcore.layers`) quantizes every Conv/Linear as the spec says except the named
modules (torchvision's names, ``features.0.0``, ``fc``): ``keep_float`` leaves them in FP32 (any INT8 or INT4
spec), ``keep_int8`` stores them as INT8 weights with the spec's granularity, calibration and scheme (INT4
weight-only only: the one precision with a higher integer precision to step up to). A layer is in one list at
most. ``keep_float`` may also name activation quantizers (``act:layer1.0.relu``, static INT8 only: see
:mod:`qcore.backends.act_quantizers`). Each list is a sorted tuple of names, so the same set is the same spec
whatever order it came in; a CSV cell or a URL value ``"fc;conv1"`` is read as two names.

The label appends ``+fp32(fc)`` / ``+int8(fc)`` for one layer and ``+fp32(3 layers #1a2b)`` for more (the
first four hex digits of the SHA-1 of the ``;``-joined sorted names tell two sets of three apart).

Pure functions of plain values: :mod:`qcore.quant.spec` calls them and turns their ``ValueError`` into its
``SpecError`` (this module imports nothing of qcore, so the spec does not import itself back).
"""

from __future__ import annotations

import hashlib

__all__ = ["KEEP_FIELDS", "ACT_PREFIX", "is_act", "keep_names", "check_keep", "keep_label"]

# an activation quantizer's name starts with this (qcore.backends.act_quantizers): keep_float only, static INT8 only
ACT_PREFIX = "act:"


def is_act(name: str) -> bool:
    """True for an activation quantizer's name (``act:...``), False for a layer's."""
    return name.startswith(ACT_PREFIX)

# field -> the precision its layers are kept in (the label's prefix)
KEEP_FIELDS = {"keep_float": "fp32", "keep_int8": "int8"}


def keep_names(value, field: str) -> tuple[str, ...]:
    """``value`` (a list of names, or one ``;``-separated string) as a sorted tuple without duplicates.

    >>> keep_names("fc; conv1;fc", "keep_float")
    ('conv1', 'fc')
    """
    names = value
    if isinstance(names, str):  # "a;b" from a CSV cell or a URL
        names = tuple(n for n in names.split(";") if n.strip())
    if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{field}={value!r} is not allowed; allowed: a list of module names such as "
                         "('features.0.0', 'classifier.3')")
    return tuple(sorted({n.strip() for n in names}))


def check_keep(precision: str, mode: str, keep_float: tuple[str, ...], keep_int8: tuple[str, ...]) -> None:
    """Raises ValueError when ``keep_int8`` cannot apply to the spec or a layer is named in both lists.

    Called with the lists already normalised (:func:`keep_names`) and float precisions' lists emptied."""
    if keep_int8 and (precision != "int4" or mode != "weight-only"):
        raise ValueError(f"keep_int8 ({', '.join(keep_int8)}) is not allowed with precision={precision!r} "
                         f"mode={mode!r}: only INT4 weight-only has a higher integer precision to keep a layer in; "
                         "allowed: precision='int4' mode='weight-only' (or keep_float for FP32)")
    acts = [n for n in keep_float + keep_int8 if is_act(n)]
    if acts and acts[0] in keep_int8:
        raise ValueError(f"keep_int8 ({acts[0]}) names an activation quantizer; allowed: layer names (an activation "
                         "quantizer is kept in FP32 with keep_float)")
    if acts and (precision != "int8" or mode != "static"):
        raise ValueError(f"keep_float ({acts[0]}) names an activation quantizer, which only static INT8 inserts; "
                         f"precision={precision!r} mode={mode!r} quantizes no activation there; allowed: precision "
                         "'int8' mode 'static', or layer names")
    both = sorted(set(keep_float) & set(keep_int8))
    if both:
        raise ValueError(f"{', '.join(both)} is in both keep_float and keep_int8; allowed: each layer in one of "
                         "them (FP32 or INT8), not both")


def keep_label(names: tuple[str, ...], precision: str) -> str:
    """``+fp32(fc)``, ``+int8(3 layers #1a2b)``; "" when ``names`` is empty."""
    if not names:
        return ""
    if len(names) == 1:
        return f"+{precision}({names[0]})"
    tag = hashlib.sha1(";".join(names).encode()).hexdigest()[:4]
    return f"+{precision}({len(names)} layers #{tag})"
