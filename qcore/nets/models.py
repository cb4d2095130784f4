"""torchvision classifiers for qcore, as architectures: the registry, building one, input sizes, the head.

Nothing here knows where weights come from (that is :mod:`qcore.nets.weights`): :func:`build_model` gives a
randomly initialised network with a head sized to the dataset's classes, :func:`check_input_size` says
whether it can take the images, :func:`restrict_head` keeps some rows of a classifier's last layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import torch
from torch import nn

__all__ = ["ModelInputError", "ModelInfo", "list_models", "check_name", "default_weights", "model_info",
           "builder_kwargs", "head_name", "build_model", "meta_model", "check_input_size", "restrict_head"]


class ModelInputError(ValueError):
    """A model that cannot take the requested input size."""


def list_models() -> list[str]:
    """Every torchvision image-classification model name."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def check_name(name: str) -> None:
    if name not in list_models():
        raise ValueError(f"unknown model {name!r}; allowed: the names of qcore.nets.models.list_models(), "
                         "e.g. 'resnet18', 'mobilenet_v3_small', 'efficientnet_b0', 'vit_b_16'")


def default_weights(name: str):
    """torchvision's default weights enum member for ``name`` (its metadata, nothing downloaded)."""
    import torchvision.models as tvm

    return tvm.get_model_weights(name).DEFAULT


@dataclass(frozen=True)
class ModelInfo:
    """What torchvision's weights metadata says about a model, known without building it."""

    name: str
    params: int | None
    gflops: float | None  # at default_input_size, for the 1000-class ImageNet head
    min_input_size: int | None
    default_input_size: int | None


@cache
def model_info(name: str) -> ModelInfo:
    """Parameter count, GFLOPs and input sizes from torchvision's weights enum (nothing is built)."""
    check_name(name)
    w = default_weights(name)
    meta, crop = w.meta, getattr(w.transforms, "keywords", {}).get("crop_size")
    min_size = meta.get("min_size")
    return ModelInfo(name, meta.get("num_params"), meta.get("_ops"), min_size[0] if min_size else None, crop)


def builder_kwargs(name: str, input_size: int | None) -> dict:
    """What torchvision's builder of ``name`` needs to take ``input_size`` images (ViT, MaxViT) or to be
    built without its auxiliary heads (GoogLeNet, Inception-v3)."""
    if name.startswith("vit_") and input_size is not None:
        patch = int(name.rsplit("_", 1)[1])
        if input_size % patch:
            raise ModelInputError(f"{name} cuts images into {patch}x{patch} patches: the input size must "
                                  f"be a multiple of {patch} (e.g. {patch * max(1, input_size // patch)} or "
                                  f"224), not {input_size}")
        return {"image_size": input_size}
    if name in ("googlenet", "inception_v3"):
        return {"aux_logits": False, "init_weights": True}
    if name.startswith("maxvit") and input_size is not None:
        return {"input_size": (input_size, input_size)}
    return {}


def head_name(model: nn.Module) -> str:
    """Qualified name of the classifier's last layer: the last Linear (or squeezenet's 1x1 Conv2d)."""
    last = None
    for qual, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            last = qual
    if last is None:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to use as its head")
    return last


def _set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """torchvision's MobileNetV3 (0.01) and MNASNet (0.0003) keep BatchNorm statistics that settle only
    after many epochs; a short run from scratch needs the usual 0.1."""
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.momentum = momentum


def build_model(name: str, num_classes: int, input_size: int | None = None, *,
                bn_momentum: float | None = 0.1) -> nn.Module:
    """A randomly initialised ``name`` with a ``num_classes`` head, on the CPU, in train mode.

    ViTs are built for ``input_size`` (a multiple of their patch size) and MaxViT likewise; GoogLeNet
    and Inception-v3 drop their auxiliary heads. ``bn_momentum=None`` keeps torchvision's momenta.
    """
    import torchvision.models as tvm

    check_name(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, not {num_classes!r}")
    model = tvm.get_model(name, weights=None, num_classes=num_classes, **builder_kwargs(name, input_size))
    if bn_momentum is not None:
        _set_bn_momentum(model, bn_momentum)
    return model


@lru_cache(maxsize=256)
def _input_problem(name: str, size: int) -> str | None:
    import torchvision.models as tvm

    try:
        kwargs = builder_kwargs(name, size)
    except ModelInputError as exc:
        return str(exc)
    try:  # on the meta device: shapes are checked, nothing is allocated or computed
        with torch.device("meta"):
            model = tvm.get_model(name, weights=None, num_classes=10, **kwargs).eval()
    except Exception:  # a few builders (RegNet) read tensor values; trust the metadata for those
        min_size = model_info(name).min_input_size or 1
        return None if size >= min_size else f"torchvision lists {min_size}x{min_size} as its smallest input"
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, size, size, device="meta"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


def meta_model(name: str) -> nn.Module:
    """torchvision's ``name`` with a 10-class head, built on the meta device (nothing allocated: a second at most),
    for what only needs its layers' names and shapes; built for real where a builder reads tensor values (RegNet)."""
    import torchvision.models as tvm

    check_name(name)
    try:
        with torch.device("meta"):
            return tvm.get_model(name, weights=None, num_classes=10, **builder_kwargs(name, None))
    except Exception:
        return build_model(name, 10)


def check_input_size(name: str, input_size: int) -> None:
    """Raise :class:`ModelInputError` when ``name`` cannot classify ``input_size`` x ``input_size`` images."""
    check_name(name)
    if not isinstance(input_size, int) or input_size < 1:
        raise ModelInputError(f"input size must be a positive int, not {input_size!r}")
    problem = _input_problem(name, input_size)
    if problem is None:
        return
    floor = max(input_size + 1, model_info(name).min_input_size or 1)
    ok = next((s for s in (32, 64, 96, 128, 160, 224, 299, 384, 518) if s >= floor
               and _input_problem(name, s) is None), None)
    hint = f"; the smallest size that works among 32, 64, 96, ..., 518 is {ok}" if ok else ""
    raise ModelInputError(f"{name} cannot take {input_size}x{input_size} inputs ({problem}){hint}. "
                          "Load the dataset at a size the model accepts: --image-size N on the command "
                          "line, 'Image size (px)' in the app, load_dataset(name, image_size=N) in Python")


def restrict_head(model: nn.Module, indices: list[int] | None) -> None:
    """Keep only the head's output rows ``indices`` (so output j is the score of class indices[j])."""
    qual = head_name(model)
    head = model.get_submodule(qual)
    n_out = head.out_features if isinstance(head, nn.Linear) else head.out_channels
    if indices is None or list(indices) == list(range(n_out)):
        return
    idx = torch.as_tensor(indices, dtype=torch.long)
    if isinstance(head, nn.Linear):
        new = nn.Linear(head.in_features, len(idx), bias=head.bias is not None)
    else:
        new = nn.Conv2d(head.in_channels, len(idx), head.kernel_size, head.stride, head.padding,
                        bias=head.bias is not None)
    with torch.no_grad():
        new.weight.copy_(head.weight[idx])
        if head.bias is not None:
            new.bias.copy_(head.bias[idx])
    parent, _, attr = qual.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
