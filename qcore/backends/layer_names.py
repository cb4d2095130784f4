"""The layers a spec can quantize or keep in FP32, named as torchvision names them, and the checks on them.

A layer here is a Conv or Linear module (:data:`qcore.backends.base.LAYER_TYPES`), named by its path in the
model: ``features.0.0`` (mobilenet_v3_small's first convolution), ``layer1.0.conv1``, ``fc``.
:func:`check_keep_float` refuses a name the model does not have, listing the model's names nearest to it (by
:func:`difflib.get_close_matches`: ``layer1.0.conv3`` -> ``layer1.0.conv1, layer1.0.conv2``), and a spec that
would quantize nothing once its exclusions apply (``keep_int8`` names are checked the same way).
Activation quantizers have names of their own (``act:layer1.0.relu``, :mod:`qcore.backends.act_quantizers`):
:func:`check_keep_float` checks them against the model's FX graph (an unknown one gets the nearest quantizer
names; the model input's is refused with why).
"""

from __future__ import annotations

import difflib

from torch import nn

from qcore.backends.base import LAYER_TYPES
from qcore.quant.spec import QuantSpec, SpecError
from qcore.quant.spec_keep import is_act

__all__ = ["LayerError", "is_act", "layer_names", "model_layer_names", "model_act_quantizers", "near_names",
           "check_keep_float", "check_names"]


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
    from qcore.nets.models import meta_model

    return layer_names(meta_model(model))


def model_act_quantizers(model: str) -> list:
    """The activation quantizers (:func:`qcore.backends.act_quantizers.quantizers`) of torchvision's ``model``
    with a 10-class head, traced on the meta device (no weights: about a second); [] for a model torch.ao FX
    cannot trace (such a model has no activation quantizer a spec could keep: the fx backend cannot build it)."""
    import torch
    import torchvision.models as tvm

    from qcore.backends.fx_int8 import model_quantizers
    from qcore.nets.models import builder_kwargs, check_name

    check_name(model)
    try:
        with torch.device("meta"):
            net = tvm.get_model(model, weights=None, num_classes=10, **builder_kwargs(model, None))
        return model_quantizers(net.eval(), example=torch.empty(1, 3, 32, 32, device="meta"))
    except Exception:  # untraceable (data-dependent control flow), or a builder that reads tensor values
        return []


def near_names(name: str, names: list[str], n: int = 5) -> list[str]:
    """The model's names nearest to ``name`` (at most ``n``; the first ones when none is near)."""
    return difflib.get_close_matches(name, names, n=n, cutoff=0.5) or names[:n]


def check_keep_float(spec: QuantSpec, model: nn.Module) -> list[str]:
    """The model's layer names, after checking ``spec.keep_float`` and ``spec.keep_int8`` against them.

    Raises :class:`qcore.quant.spec.SpecError` for an unknown name (with the nearest names) and for a spec that keeps
    every layer out of its precision (it would quantize nothing as it says: measure FP32 instead); ``act:`` names
    are checked against the model's activation quantizers (an FX trace of the model, only when there are some).
    """
    acts = None
    if any(is_act(n) for n in spec.keep_float):
        from qcore.backends.fx_int8 import model_quantizers

        acts = model_quantizers(model)
    return check_names(spec, layer_names(model), acts)


def check_names(spec: QuantSpec, names: list[str], acts: list | None = None) -> list[str]:
    """:func:`check_keep_float` against a list of the model's layer names (as :func:`model_layer_names` gives)
    and its activation quantizers (:func:`qcore.backends.act_quantizers.quantizers`; None: an ``act:`` name is
    refused, there being nothing to check it against)."""
    known = set(names)
    if any(is_act(n) for n in spec.keep_float):
        if acts is None:
            raise SpecError("keep_float names an activation quantizer, but the model's were not listed to check it "
                            "against")
        from qcore.backends.act_quantizers import check_act_names

        check_act_names(spec.keep_float, acts)
    for field in ("keep_float", "keep_int8"):
        for name in getattr(spec, field):
            if is_act(name):
                continue
            if name not in known:
                raise SpecError(f"{field}: the model has no layer {name!r}; near names: "
                                f"{', '.join(near_names(name, names))} ({len(names)} layers in all)")
    if not spec.is_float and known <= set(spec.keep_float) | set(spec.keep_int8):
        who, where = ("keep_float and keep_int8 keep", "in FP32 or INT8") if spec.keep_int8 else ("keep_float keeps",
                                                                                                "in FP32")
        raise SpecError(f"{who} all {len(names)} layers {where}, so nothing would be quantized as the spec says; "
                        "allowed: at most all layers but one (or measure the FP32 spec)")
    return names
