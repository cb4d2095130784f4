"""The layers a spec can quantize or keep in FP32, named as torchvision names them, and the checks on them.

A layer here is a Conv or Linear module (:data:`qcore.backends.base.LAYER_TYPES`), named by its path in the
model: ``features.0.0`` (mobilenet_v3_small's first convolution), ``layer1.0.conv1``, ``fc``.
:func:`check_keep_float` refuses a name the model does not have, listing the model's names nearest to it (by
:func:`difflib.get_close_matches`: ``layer1.0.conv3`` -> ``layer1.0.conv1, layer1.0.conv2``), and a spec that
would quantize nothing once its exclusions apply (``keep_int8`` names are checked the same way).
"""

from __future__ import annotations

import difflib

from torch import nn

from ..backends.base import LAYER_TYPES
from ..spec import QuantSpec, SpecError

__all__ = ["LayerError", "layer_names", "model_layer_names", "near_names", "check_keep_float", "check_names"]


class LayerError(ValueError):
    """A layer name or a set of layers that cannot be used; the message says what is allowed."""


def layer_names(model: nn.Module) -> list[str]:
    """Every Conv and Linear module's name, in the model's order; raises LayerError when there is none."""
    names = [name for name, m in model.named_modules() if isinstance(m, LAYER_TYPES) and name]
    if not names:
        raise LayerError(f"{type(model).__name__} has no quantizable layer (Conv or Linear): there is nothing to "
                         "measure per layer")
    return names


def model_layer_names(model: str) -> list[str]:
    """:func:`layer_names` of torchvision's ``model`` (a 10-class head: names do not depend on the classes), built
    on the meta device (nothing allocated: a second at most), so a page can list them without loading weights."""
    import torch
    import torchvision.models as tvm

    from ..models import build_model, builder_kwargs, check_name

    check_name(model)
    try:
        with torch.device("meta"):
            net = tvm.get_model(model, weights=None, num_classes=10, **builder_kwargs(model, None))
    except Exception:  # a few builders (RegNet) read tensor values at init: build them for real
        net = build_model(model, 10)
    return layer_names(net)


def near_names(name: str, names: list[str], n: int = 5) -> list[str]:
    """The model's names nearest to ``name`` (at most ``n``; the first ones when none is near)."""
    return difflib.get_close_matches(name, names, n=n, cutoff=0.5) or names[:n]


def check_keep_float(spec: QuantSpec, model: nn.Module) -> list[str]:
    """The model's layer names, after checking ``spec.keep_float`` and ``spec.keep_int8`` against them.

    Raises :class:`qcore.spec.SpecError` for an unknown name (with the nearest names) and for a spec that keeps
    every layer out of its precision (it would quantize nothing as it says: measure FP32 instead).
    """
    return check_names(spec, layer_names(model))


def check_names(spec: QuantSpec, names: list[str]) -> list[str]:
    """:func:`check_keep_float` against a list of the model's layer names (as :func:`model_layer_names` gives)."""
    known = set(names)
    for field in ("keep_float", "keep_int8"):
        for name in getattr(spec, field):
            if name not in known:
                raise SpecError(f"{field}: the model has no layer {name!r}; near names: "
                                f"{', '.join(near_names(name, names))} ({len(names)} layers in all)")
    if not spec.is_float and known <= set(spec.keep_float) | set(spec.keep_int8):
        who, where = ("keep_float and keep_int8 keep", "in FP32 or INT8") if spec.keep_int8 else ("keep_float keeps",
                                                                                                "in FP32")
        raise SpecError(f"{who} all {len(names)} layers {where}, so nothing would be quantized as the spec says; "
                        "allowed: at most all layers but one (or measure the FP32 spec)")
    return names
