"""torchvision classifiers for qcore: the registry, head adaptation and the weights fallback chain.

Weights are looked for in this order (``load_model(..., weights="auto")``), and the result says which
one it got:

1. ``pretrained:<Enum>``: torchvision's ImageNet weights, from ``$TORCH_HOME`` or downloaded, when the
   dataset's classes are ImageNet classes (synset folders); the 1000-way head is cut down to those
   classes (rows of the last layer), so logits index the dataset's labels;
2. ``checkpoint:<path>``: a user's ``.safetensors`` / ``.pt`` / ``.pth`` state dict, read with
   ``weights_only=True`` (pickles that need arbitrary code are refused);
3. ``baseline:<path>``: a model trained by :mod:`qcore.train` on the dataset, cached on disk.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from qcore import safe_checkpoint
from qcore.data import DatasetBundle

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
ProgressFn = Callable[[int, int, str], None]


class WeightsError(ValueError):
    """Weights that cannot be had or do not fit; the message names the file or source and why."""


class ModelInputError(ValueError):
    """A model that cannot take the requested input size."""


def list_models() -> list[str]:
    """Every torchvision image-classification model name."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def _check_name(name: str) -> None:
    if name not in list_models():
        raise ValueError(f"unknown model {name!r}; allowed: the names of qcore.models.list_models(), "
                         "e.g. 'resnet18', 'mobilenet_v3_small', 'efficientnet_b0', 'vit_b_16'")


def _default_weights(name: str):
    import torchvision.models as tvm

    return tvm.get_model_weights(name).DEFAULT


def _eval_transform(weights) -> tuple[int, int, str]:
    """``(crop, resize, interpolation)`` of the ImageNet evaluation transform that goes with ``weights``."""
    tf = getattr(weights.transforms, "keywords", {})
    crop, resize = tf.get("crop_size", 224), tf.get("resize_size", 256)
    crop, resize = (v[0] if isinstance(v, (list, tuple)) else v for v in (crop, resize))
    mode = tf.get("interpolation", "bilinear")
    return int(crop), int(resize), str(getattr(mode, "value", mode)).lower()


def pretrained_transform(name: str, size: int) -> tuple[int, str] | None:
    """How torchvision's default weights for ``name`` want images prepared for ``size``-pixel crops:
    ``(short side to resize to, interpolation)``, scaled from their evaluation transform (resnet50:
    232 then 224, bilinear; efficientnet_b0: 256 then 224, bicubic). None when the model has no weights."""
    try:
        crop, resize, interpolation = _eval_transform(_default_weights(name))
    except (ValueError, AttributeError, KeyError):
        return None
    return max(size, round(resize * size / crop)), interpolation


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
    _check_name(name)
    w = _default_weights(name)
    meta, crop = w.meta, getattr(w.transforms, "keywords", {}).get("crop_size")
    min_size = meta.get("min_size")
    return ModelInfo(name, meta.get("num_params"), meta.get("_ops"), min_size[0] if min_size else None, crop)


def _builder_kwargs(name: str, input_size: int | None) -> dict:
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


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
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

    _check_name(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, not {num_classes!r}")
    model = tvm.get_model(name, weights=None, num_classes=num_classes, **_builder_kwargs(name, input_size))
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    return model


@lru_cache(maxsize=256)
def _input_problem(name: str, size: int) -> str | None:
    import torchvision.models as tvm

    try:
        kwargs = _builder_kwargs(name, size)
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


def check_input_size(name: str, input_size: int) -> None:
    """Raise :class:`ModelInputError` when ``name`` cannot classify ``input_size`` x ``input_size`` images."""
    _check_name(name)
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


def load_dataset_for(name: str, dataset: str, image_size: int | None = None) -> DatasetBundle:
    """``dataset`` at ``image_size`` as model ``name`` is fed it. A folder of ImageNet classes is
    prepared as the model's torchvision weights were evaluated (resnet50: short side 232 for 224,
    efficientnet_b0: bicubic), whatever weights are then loaded, so the pretrained weights, a
    checkpoint and a baseline (trained by a sweep or by ``qcore train``) all see the same images."""
    from qcore import data
    from qcore.imagefolder import imagenet_folder

    kind = data.canonical_name(dataset)
    if kind.startswith("imagefolder:"):
        size = image_size or data.default_image_size(kind)
        if imagenet_folder(Path(kind[len("imagefolder:"):])) and (want := pretrained_transform(name, size)):
            return data.load_dataset(dataset, size, resize=want[0], interpolation=want[1])
    return data.load_dataset(dataset, image_size)


@dataclass
class LoadedModel:
    """A ready fp32 CPU model in eval mode, and where its weights came from."""

    model: nn.Module
    name: str
    weights: str  # "pretrained:<EnumName>" | "checkpoint:<path>" | "baseline:<path>"
    num_classes: int
    classes: list[str]
    input_size: int
    notes: list[str] = field(default_factory=list)


def load_model(name: str, dataset: DatasetBundle, weights: str = "auto", *,
               progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> LoadedModel:
    """``name`` with weights for ``dataset``'s classes and image size.

    ``weights``: ``"auto"`` (pretrained for ImageNet-class folders when obtainable, else the cached
    baseline, trained now if missing, reporting through ``progress(done, total, message)``),
    ``"pretrained"``, ``"baseline"`` or the path of a checkpoint file.
    """
    _check_name(name)
    check_input_size(name, dataset.image_size)
    notes: list[str] = list(dataset.notes)
    if weights == "auto":
        if dataset.imagenet_indices is not None:
            try:
                return _pretrained(name, dataset, notes)
            except WeightsError as exc:
                notes.append(f"pretrained weights unavailable, using a qcore baseline instead: {exc}")
        return _baseline(name, dataset, notes, progress, cancel)
    if weights == "pretrained":
        if dataset.imagenet_indices is None:
            raise WeightsError(f"torchvision's pretrained {name} classifies the 1000 ImageNet classes, and "
                               f"{dataset.name}'s classes ({', '.join(dataset.classes[:4])}, ...) are not "
                               "ImageNet classes; use weights='baseline' (trained on this dataset) or a "
                               "checkpoint. Folders named by ImageNet synset (n01440764) or class name work.")
        return _pretrained(name, dataset, notes)
    if weights == "baseline":
        return _baseline(name, dataset, notes, progress, cancel)
    return _checkpoint(name, dataset, Path(str(weights)).expanduser(), notes)


def _finish(model: nn.Module, name: str, source: str, classes: list[str], dataset: DatasetBundle,
            notes: list[str]) -> LoadedModel:
    model = model.float().cpu().eval()
    return LoadedModel(model, name, source, len(classes), list(classes), dataset.image_size, notes)


def _pretrained(name: str, dataset: DatasetBundle, notes: list[str]) -> LoadedModel:
    import torchvision.models as tvm

    w = _default_weights(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name
    try:  # load_state_dict_from_url uses the cached file when present, else downloads it
        state = w.get_state_dict(progress=False, check_hash=True, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise WeightsError(f"could not get {w} ({type(exc).__name__}: {str(exc)[:160]}); torchvision "
                           f"looks for it in {cached} and downloads it from {w.url} when online") from exc
    check_state(state, f"torchvision's {w} ({cached})")
    kwargs, size = {}, dataset.image_size
    if name in ("googlenet", "inception_v3"):
        kwargs = {"aux_logits": True, "transform_input": True, "init_weights": False}
    elif name.startswith("vit_"):
        kwargs = _builder_kwargs(name, size)
        trained = w.meta["min_size"][0]
        if size != trained:
            from torchvision.models.vision_transformer import interpolate_embeddings

            state = interpolate_embeddings(size, int(name.rsplit("_", 1)[1]), state)
            notes.append(f"position embeddings interpolated from {trained} to {size} pixels")
    elif name.startswith("maxvit"):
        kwargs = _builder_kwargs(name, size)
    model = tvm.get_model(name, weights=None, num_classes=len(w.meta["categories"]), **kwargs)
    _load_strict(model, state, f"torchvision's {w}")
    if name == "googlenet":
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    elif name == "inception_v3":
        model.aux_logits, model.AuxLogits = False, None
    restrict_head(model, dataset.imagenet_indices)
    crop, resize, interpolation = _eval_transform(w)
    if crop != size:
        notes.append(f"{w} was evaluated on {crop}-pixel crops; these images are {size} pixels: accuracy may differ")
    want = pretrained_transform(name, size)
    if want is not None and dataset.resize is not None and want != (dataset.resize, dataset.interpolation):
        notes.append(f"{w} was evaluated on images resized to {resize} ({interpolation}) and cropped to {crop}; "
                     f"these were resized to {dataset.resize} ({dataset.interpolation}): accuracy may differ")
    classes = [w.meta["categories"][i] for i in dataset.imagenet_indices]
    return _finish(model, name, f"pretrained:{type(w).__name__}.{w.name}", classes, dataset, notes)


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


def read_state_dict(path: Path, name: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or PyTorch checkpoint (any file name: the format is read from the content);
    never runs code from the file, and checks what reading it may cost first (:mod:`qcore.safe_checkpoint`).

    A ``.pt`` may hold the state dict itself or a dict with it under ``state_dict`` / ``model`` /
    ``model_state_dict``; ``module.`` and ``_orig_mod.`` prefixes (DataParallel, torch.compile) are
    removed. Keys must be strings and floating-point values finite. ``name`` is how messages call the file
    (default: its path).
    """
    path = Path(path)
    name = name or str(path)
    if not path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise WeightsError(f"weights must be 'auto', 'pretrained', 'baseline' or a checkpoint file (e.g. "
                               f"{', '.join(CHECKPOINT_SUFFIXES)}); got {name!r}")
        raise WeightsError(f"checkpoint {name} does not exist")
    try:
        kind = safe_checkpoint.check_file(path, name)
    except safe_checkpoint.CheckpointRefused as exc:
        raise WeightsError(str(exc)) from exc
    except OSError as exc:
        raise WeightsError(f"{name} cannot be read: {exc.strerror or type(exc).__name__}") from exc
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:
            raise WeightsError(f"{name} is not a readable safetensors file: {exc}") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            # torch names the refused global in one sentence (and then suggests allowing it: not here)
            first = next((line for line in lines if "GLOBAL" in line.upper()), lines[0] if lines else
                         type(exc).__name__).split(". ")[0][:200]
            raise WeightsError(f"{name} needs arbitrary code to load (it pickles more than tensors: "
                               f"{first}); qcore refused it. Save only the weights instead: "
                               "torch.save(model.state_dict(), path), or use .safetensors") from exc
        except Exception as exc:
            why = str(exc).replace(str(path), name).splitlines()
            raise WeightsError(f"{name} could not be read as a PyTorch checkpoint: {type(exc).__name__}: "
                               f"{(why or [''])[0][:200]}") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        if isinstance(obj, dict):
            others = [f"{k!r}: {type(v).__name__}" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
            what = f"a dict with {len(obj)} entries, {len(others)} of them not tensors ({', '.join(others[:6])})"
        else:
            what = type(obj).__name__
        raise WeightsError(f"{name} holds no state dict of tensors (found {what}); expected the result of "
                           "model.state_dict(), alone or under a 'state_dict' or 'model' key")
    check_state(obj, name)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def check_state(state: dict, source: str) -> None:
    """:func:`qcore.safe_checkpoint.check_state` as a :class:`WeightsError`: string keys, finite values."""
    try:
        safe_checkpoint.check_state(state, source)
    except safe_checkpoint.CheckpointRefused as exc:
        raise WeightsError(str(exc)) from exc


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:12]) + (f", ... ({len(items) - 12} more)" if len(items) > 12 else "")
    return f"{title} ({len(items)}): {shown}"


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [_listing(t, x) for t, x in (("missing keys", missing), ("unexpected keys", unexpected),
                                             ("shape mismatches (checkpoint vs model)", shapes)) if x]
        raise WeightsError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _checkpoint(name: str, dataset: DatasetBundle, path: Path, notes: list[str]) -> LoadedModel:
    state = read_state_dict(path)
    model = build_model(name, dataset.num_classes, dataset.image_size)
    rows = state.get(f"{head_name(model)}.weight")
    imagenet_head = rows is not None and rows.shape[0] == 1000 != dataset.num_classes
    if dataset.imagenet_indices is not None and imagenet_head:
        model = build_model(name, 1000, dataset.image_size)
        _load_strict(model, state, f"checkpoint {path}")
        restrict_head(model, dataset.imagenet_indices)
        notes.append(f"1000-class head cut down to the dataset's {dataset.num_classes} ImageNet classes")
    else:
        _load_strict(model, state, f"checkpoint {path}")
    return _finish(model, name, f"checkpoint:{path}", dataset.classes, dataset, notes)


def _baseline(name: str, dataset: DatasetBundle, notes: list[str], progress: ProgressFn | None,
              cancel: Callable[[], bool] | None) -> LoadedModel:
    from safetensors.torch import load_file

    from qcore import train

    recipe = train.recipe_for(name, dataset.name, image_size=dataset.image_size)
    path = train.find_baseline(name, dataset.name, recipe)
    if path is None:
        path = train.train_baseline(name, dataset.name, recipe=recipe, progress=progress, cancel=cancel,
                                    bundle=dataset)
        notes.append("no cached baseline for this model, dataset and recipe: trained one now")
    meta = train.baseline_meta(path)
    if meta.get("classes") != dataset.classes:
        raise WeightsError(f"baseline {path} was trained on classes {meta.get('classes')}, but "
                           f"{dataset.name} has {dataset.classes}; delete that file (and its .json) to "
                           "train a new one")
    model = build_model(name, dataset.num_classes, dataset.image_size)
    state = load_file(str(path), device="cpu")
    check_state(state, f"baseline {path}")
    _load_strict(model, state, f"baseline {path}")
    notes.append(f"baseline trained by qcore: {meta.get('test_accuracy', float('nan')):.1%} test accuracy "
                 f"after {recipe.epochs} epoch(s), {meta.get('train_seconds', 0):.0f} s")
    return _finish(model, name, f"baseline:{path}", dataset.classes, dataset, notes)
