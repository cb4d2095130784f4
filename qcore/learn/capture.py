"""A layer's tensor: its weights, or its input activations captured on real images.

Layers are the model's ``Conv2d`` and ``Linear`` modules under their torchvision names
(``layer1.0.conv1``, ``fc``, ``features.3.block.0.0``): the layers a sweep quantizes.

Input activations are what the layer receives, taken by a forward pre-hook (it fires just before the
layer runs, on exactly the tensor an int8 kernel would quantize), one tensor per calibration batch.
The forward stops right after the hook has fired (nothing downstream is needed), and runs on a copy
of the model, so the shared model is never touched. Example: resnet18 on Fashion-MNIST at 32x32,
``layer1.0.conv1``, 8 batches of 32 images: 8 tensors of ``32 x 64 x 8 x 8``, 1,048,576 values, all
>= 0 (they come out of a ReLU and a max-pool).

Weights are taken as the sweeps quantize them: from the model with each BatchNorm folded into the
convolution before it (:func:`qcore.learn.source.fold_batchnorm`), unless asked otherwise.

Channels: a weight's output channels (axis 0: one row per filter or output feature); an activation's
input channels (axis 1 of a convolution's ``N x C x H x W`` input, the last axis of a Linear's input).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LAYER_TYPES", "KINDS", "MAX_VALUES", "LayerInfo", "list_layers", "default_layer", "find_layer",
           "Captured", "capture_weights", "capture_inputs"]

LAYER_TYPES = (nn.Conv2d, nn.Linear)  # what the backends quantize
KINDS = ("weights", "activations")
MAX_VALUES = 2**22  # activations kept per layer: 4,194,304 float32 values, 16 MB


@dataclass(frozen=True)
class LayerInfo:
    """A Conv or Linear layer of the model, by its module name."""

    name: str
    type_name: str  # "Conv2d", "Linear", ...
    weight_shape: tuple[int, ...]
    groups: int = 1

    @property
    def is_linear(self) -> bool:
        return self.type_name == "Linear"

    def label(self) -> str:
        """``layer1.0.conv1 · Conv2d 64→64, 3x3`` or ``fc · Linear 512→10``."""
        s = self.weight_shape
        if self.is_linear:
            return f"{self.name} · Linear {s[1]}→{s[0]}"
        kernel = "x".join(str(k) for k in s[2:])
        cin = s[1] * self.groups
        dw = ", depthwise" if self.groups > 1 and self.groups == cin else (f", {self.groups} groups"
                                                                           if self.groups > 1 else "")
        return f"{self.name} · {self.type_name} {cin}→{s[0]}, {kernel}{dw}"


def list_layers(model: nn.Module) -> list[LayerInfo]:
    """Every Conv and Linear layer in module order."""
    return [LayerInfo(name, type(m).__name__, tuple(m.weight.shape), getattr(m, "groups", 1))
            for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)]


def default_layer(layers: list[LayerInfo]) -> str:
    """The second layer (the first one sees raw pixels; the second sees what a network makes of them:
    resnet18's ``layer1.0.conv1``, mobilenet_v3_small's ``features.1.block.0.0``)."""
    if not layers:
        raise ValueError("this model has no Conv or Linear layer")
    return layers[min(1, len(layers) - 1)].name


def find_layer(model: nn.Module, name: str) -> tuple[nn.Module, LayerInfo]:
    layers = {info.name: info for info in list_layers(model)}
    if name not in layers:
        shown = ", ".join(list(layers)[:6])
        raise ValueError(f"layer {name!r} is not a Conv or Linear layer of this model; allowed: its "
                         f"{len(layers)} layers by module name, e.g. {shown}")
    return model.get_submodule(name), layers[name]


@dataclass
class Captured:
    """One layer's tensor as a list of batches (weights: one entry), with its channel axis."""

    layer: LayerInfo
    kind: str  # "weights" | "activations"
    batches: list[torch.Tensor]
    channel_axis: int
    images: int = 0  # images the activations were captured on (0 for weights)

    @property
    def numel(self) -> int:
        return sum(b.numel() for b in self.batches)

    @property
    def channels(self) -> int:
        return self.batches[0].shape[self.channel_axis]

    def values(self) -> torch.Tensor:
        """Every value, flat (float32)."""
        return torch.cat([b.reshape(-1) for b in self.batches])

    def channel_rows(self) -> torch.Tensor:
        """``channels x values-per-channel``: row c holds every value of channel c (all batches)."""
        return torch.cat([b.movedim(self.channel_axis, 0).reshape(b.shape[self.channel_axis], -1)
                          for b in self.batches], dim=1)

    def shape_text(self) -> str:
        shape = "x".join(str(s) for s in self.batches[0].shape)
        if self.kind == "weights":
            return f"weight {shape}, {self.numel:,} values"
        return f"{len(self.batches)} batches of {shape}, {self.numel:,} values from {self.images} images"


def capture_weights(model: nn.Module, name: str) -> Captured:
    layer, info = find_layer(model, name)
    return Captured(info, "weights", [layer.weight.detach().float().cpu().clone()], channel_axis=0)


class _Stop(Exception):
    """Raised by the hook once it has the input: the rest of the forward is not needed."""


@torch.no_grad()
def capture_inputs(model: nn.Module, name: str, batches: list[torch.Tensor], max_values: int = MAX_VALUES) -> Captured:
    """The input of layer ``name`` for each batch (until ``max_values`` are kept; at least one batch)."""
    model = copy.deepcopy(model).eval()
    layer, info = find_layer(model, name)
    seen: list[torch.Tensor] = []

    def hook(_module, args):
        seen.append(args[0].detach().float().cpu().clone())
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    kept: list[torch.Tensor] = []
    images, total = 0, 0
    try:
        for x in batches:
            seen.clear()
            try:
                model(x)
            except _Stop:
                pass
            if not seen:
                raise ValueError(f"layer {name!r} was never called as a module in the forward pass (its weight is "
                                 "used directly, as attention's out_proj is): its input cannot be captured; "
                                 "choose another layer, or look at its weights")
            t = seen[0]
            per_image = t[0].numel() if t.dim() > 1 else t.numel()
            room = max(1, (max_values - total) // max(1, per_image))
            if room < t.shape[0]:
                t = t[:room]
            kept.append(t)
            images += t.shape[0]
            total += t.numel()
            if total >= max_values:
                break
    finally:
        handle.remove()
    axis = -1 if info.is_linear else 1
    return Captured(info, "activations", kept, channel_axis=axis, images=images)
