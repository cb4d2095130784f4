"""Where a model's weights come from: torchvision's pretrained ones, a user's checkpoint, or a baseline.

Weights are looked for in this order (``load_model(..., weights="auto")``), and the result says which
one it got:

1. ``pretrained:<Enum>``: torchvision's ImageNet weights, from ``$TORCH_HOME`` or downloaded, when the
   dataset's classes are ImageNet classes (synset folders); the 1000-way head is cut down to those
   classes (rows of the last layer), so logits index the dataset's labels;
2. ``checkpoint:<path>``: a user's ``.safetensors`` / ``.pt`` / ``.pth`` state dict, read with
   ``weights_only=True`` (pickles that need arbitrary code are refused);
3. ``baseline:<path>``: a model trained by :mod:`qcore.nets.train` on the dataset, cached on disk (trained
   now, with progress, when missing).

The weights also decide how an ImageNet-class folder is prepared (:func:`load_dataset_for`): as the
model's torchvision weights were evaluated, so every source of weights sees the same images.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from qcore import data
from qcore.data.base import DatasetBundle
from qcore.data.imagefolder import imagenet_folder
from qcore.guards import safe_checkpoint
from qcore.nets import train
from qcore.nets.models import (
    build_model,
    builder_kwargs,
    check_input_size,
    check_name,
    default_weights,
    head_name,
    restrict_head,
)

__all__ = ["CHECKPOINT_SUFFIXES", "WeightsError", "LoadedModel", "pretrained_transform", "load_dataset_for",
           "load_model", "read_state_dict", "check_state", "fit_mismatches"]

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
ProgressFn = Callable[[int, int, str], None]


class WeightsError(ValueError):
    """Weights that cannot be had or do not fit; the message names the file or source and why."""


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
        crop, resize, interpolation = _eval_transform(default_weights(name))
    except (ValueError, AttributeError, KeyError):
        return None
    return max(size, round(resize * size / crop)), interpolation


def load_dataset_for(name: str, dataset: str, image_size: int | None = None) -> DatasetBundle:
    """``dataset`` at ``image_size`` as model ``name`` is fed it. A folder of ImageNet classes is
    prepared as the model's torchvision weights were evaluated (resnet50: short side 232 for 224,
    efficientnet_b0: bicubic), whatever weights are then loaded, so the pretrained weights, a
    checkpoint and a baseline (trained by a sweep or by ``qcore train``) all see the same images."""
    folder = data.folder_path(data.canonical_name(dataset))
    if folder is not None:
        size = image_size or data.default_image_size(dataset)
        if imagenet_folder(folder) and (want := pretrained_transform(name, size)):
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
    check_name(name)
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

    w = default_weights(name)
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
        kwargs = builder_kwargs(name, size)
        trained = w.meta["min_size"][0]
        if size != trained:
            from torchvision.models.vision_transformer import interpolate_embeddings

            state = interpolate_embeddings(size, int(name.rsplit("_", 1)[1]), state)
            notes.append(f"position embeddings interpolated from {trained} to {size} pixels")
    elif name.startswith("maxvit"):
        kwargs = builder_kwargs(name, size)
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


def read_state_dict(path: Path, name: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or PyTorch checkpoint (any file name: the format is read from the content);
    never runs code from the file, and checks what reading it may cost first (:mod:`qcore.guards.safe_checkpoint`).

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
    """:func:`qcore.guards.safe_checkpoint.check_state` as a :class:`WeightsError`: string keys, finite values."""
    try:
        safe_checkpoint.check_state(state, source)
    except safe_checkpoint.CheckpointRefused as exc:
        raise WeightsError(str(exc)) from exc


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:12]) + (f", ... ({len(items) - 12} more)" if len(items) > 12 else "")
    return f"{title} ({len(items)}): {shown}"


def fit_mismatches(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> list[str]:
    """Why tensors of shapes ``found`` (name: shape) cannot load strictly into a model whose state dict has
    ``expected``: its missing keys, unexpected keys and shape mismatches, each listed; empty when they fit.
    The one rule for a loaded checkpoint and for :func:`qcore.nets.checkpoint_fit.fit_problem` (shapes only)."""
    expected = {k: tuple(v) for k, v in expected.items()}
    found = {k: tuple(v) for k, v in found.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} {found[k]} vs {expected[k]}" for k in sorted(set(expected) & set(found)) if found[k] != expected[k]]
    return [_listing(t, x) for t, x in (("missing keys", missing), ("unexpected keys", unexpected),
                                        ("shape mismatches (checkpoint vs model)", shapes)) if x]


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    parts = fit_mismatches({k: v.shape for k, v in model.state_dict().items()},
                           {k: v.shape for k, v in state.items()})
    if parts:
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


def baseline_note(path: Path, meta: dict, epochs: float) -> str:
    """The FP32 row's note on where its baseline came from: shipped with qcore (trained once, elsewhere, by
    qcore's recipe: its training seconds are that machine's) or trained by qcore on this machine."""
    acc = f"{meta.get('test_accuracy', float('nan')):.1%} test accuracy after {epochs:g} epoch(s)"
    if path.resolve().parent == train.SHIPPED.resolve():
        return f"baseline shipped with qcore (qcore/shipped, trained by qcore's recipe, not on this machine): {acc}"
    return f"baseline trained by qcore on this machine: {acc}, {meta.get('train_seconds', 0):.0f} s"


def _baseline(name: str, dataset: DatasetBundle, notes: list[str], progress: ProgressFn | None,
              cancel: Callable[[], bool] | None) -> LoadedModel:
    from safetensors.torch import load_file

    recipe = train.recipe_for(name, dataset.name, image_size=dataset.image_size)
    path = train.find_baseline(name, dataset.name, recipe, notes)  # a damaged one is passed over, said in notes
    if path is None:
        path = train.train_baseline(name, dataset, recipe=recipe, progress=progress, cancel=cancel)
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
    notes.append(baseline_note(path, meta, recipe.epochs))
    return _finish(model, name, f"baseline:{path}", dataset.classes, dataset, notes)
