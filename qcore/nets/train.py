"""Baseline training: qcore's own FP32 reference when no pretrained weights fit the dataset.

A :class:`Recipe` records every setting that changes the trained weights. Its :meth:`Recipe.key` names
the cached file, so changing any field (epochs, learning rate, image size, seed, ...) trains anew
instead of reusing a model trained another way.

Known-good recipes per family (one-cycle schedule, no augmentation: runs are short, a few epochs at
most, and augmentation only pays off over longer ones). Convolutions over feature maps no larger than
their kernel train as dense matrix products (:mod:`qcore.nets.fastconv`, exact): 2-3x faster steps for
ResNets at 32x32.

- ResNet / ResNeXt / Wide ResNet: AdamW, peak 3e-3, weight decay 0.05, batch 128, channels-last (on
  Fashion-MNIST, SGD with Nesterov momentum diverged at peak rates of 0.05 and above; resnet18, 3.5
  epochs: 91.88% in 440 s; batch 64 for 2.7 epochs, about the same time: 91.36%);
- MobileNet / EfficientNet / MNASNet / ShuffleNet: AdamW, peak 5e-3, channels-last, label smoothing 0.1
  (mobilenet_v3_small on Fashion-MNIST, 2 epochs: 88.86% with it, 87.79% without; 88.89% in 268 s with
  qcore.nets.fastconv), and BatchNorm momentum 0.1:
  torchvision's MobileNetV3 keeps 0.01 (MNASNet 0.0003), so after a short run the running statistics
  still describe the random initial weights and evaluation sits at chance;
- ViT / Swin / MaxViT / ConvNeXt: AdamW, peak 1e-3, weight decay 0.05, label smoothing 0.1;
- anything else: AdamW, peak 1e-3.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qcore.data.base import DatasetBundle, batches
from qcore.data.imagefolder import folder_key
from qcore.data.registry import canonical_name, default_image_size, folder_path
from qcore.env.paths import atomic_write_bytes, subdir
from qcore.metrics.measure import predicted_class
from qcore.nets import baseline_check, baseline_lock
from qcore.nets.fastconv import tiny_map_convs
from qcore.nets.models import build_model, check_input_size

__all__ = ["RECIPE_VERSION", "OPTIMIZERS", "SCHEDULES", "AUGMENTS", "SHIPPED", "WAITING", "Cancelled", "Recipe",
           "family_settings", "recipe_for", "baseline_path", "baseline_meta", "find_baseline", "training_elsewhere",
           "evaluate", "train_baseline", "with_overrides"]

RECIPE_VERSION = 2  # 2: convolutions over tiny maps trained as dense matrix products (qcore.nets.fastconv)
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
AUGMENTS = ("none", "flip", "crop-flip")
ProgressFn = Callable[[int, int, str], None]
# Baselines that ship with qcore (package data), found after the user's own: the offline default's, so that
# the first start measures at once instead of training (see docs/guide.md, "Baselines"). qcore/shipped/, beside
# the package's sub-packages: it is package data (pyproject.toml).
SHIPPED = Path(__file__).resolve().parent.parent / "shipped"
WAITING = "waiting for another process training this baseline"


class Cancelled(Exception):
    """Raised by :func:`train_baseline` when its ``cancel()`` returns True; nothing is saved."""


@dataclass(frozen=True)
class Recipe:
    """How a baseline is trained. Every field goes into :meth:`key`."""

    model: str
    dataset: str
    image_size: int = 32
    epochs: float = 1.0  # fractions allowed: 1.5 epochs is 1.5 x (train images // batch_size) steps
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1  # the peak of the one-cycle schedule, the start of the cosine one
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    momentum: float = 0.9
    bn_momentum: float = 0.1
    label_smoothing: float = 0.0
    augment: str = "none"
    channels_last: bool = False  # NHWC activations: faster for depthwise convolutions on CPU
    seed: int = 0
    train_limit: int | None = None  # train on a seeded subset of this many images
    eval_limit: int | None = None  # report accuracy on a seeded subset of the test split
    max_steps: int | None = None  # stop after this many optimizer steps (tests, quick looks)
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("augment", AUGMENTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Recipe.{name} must be one of {allowed}, not {getattr(self, name)!r}")
        positive = {"image_size": int, "batch_size": int, "epochs": (int, float), "lr": (int, float)}
        for name, kind in positive.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Recipe.{name} must be a positive number, not {value!r}")
        for name in ("train_limit", "eval_limit", "max_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Recipe.{name} must be None or a positive int, not {value!r}")
        if not 0 <= self.label_smoothing < 1 or self.weight_decay < 0 or not 0 < self.bn_momentum <= 1:
            raise ValueError("Recipe: label_smoothing must be in [0, 1), weight_decay >= 0, "
                             "bn_momentum in (0, 1]")
        for name in ("epochs", "lr", "weight_decay", "momentum", "bn_momentum", "label_smoothing"):
            object.__setattr__(self, name, float(getattr(self, name)))  # 3 and 3.0: one recipe, one key

    def key(self) -> str:
        """A stable 12-hex-digit hash of every field (model and dataset included)."""
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


_FAMILIES: list[tuple[tuple[str, ...], dict]] = [
    (("resnet", "resnext", "wide_resnet"),
     {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "batch_size": 128, "channels_last": True}),
    (("mobilenet", "efficientnet", "mnasnet", "shufflenet"),
     {"optimizer": "adamw", "lr": 5e-3, "weight_decay": 0.01, "channels_last": True, "label_smoothing": 0.1}),
    (("vit", "swin", "maxvit", "convnext"),
     {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "label_smoothing": 0.1}),
]
_GENERIC = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
# Default epochs, tuned on Fashion-MNIST at 32x32 to the 2-core CPU budget (see README).
_EPOCHS = {"resnet18": 3.5, "mobilenet_v3_small": 2.0}
_DEFAULT_EPOCHS = 2.0


def family_settings(model_name: str) -> dict:
    """The optimizer settings :func:`recipe_for` uses for ``model_name``'s family."""
    for prefixes, settings in _FAMILIES:
        if model_name.startswith(prefixes):
            return dict(settings)
    return dict(_GENERIC)


def recipe_for(model_name: str, dataset_name: str, epochs: float | None = None, *,
               image_size: int | None = None, seed: int = 0) -> Recipe:
    """The known-good recipe for ``model_name`` on ``dataset_name`` (see the module docstring)."""
    dataset_name = canonical_name(dataset_name)
    size = default_image_size(dataset_name) if image_size is None else image_size
    if epochs is None:
        epochs = _EPOCHS.get(model_name, _DEFAULT_EPOCHS)
        if folder_path(dataset_name) is not None:
            epochs = max(epochs, 5.0)  # folders are small: more passes for the same number of steps
    return Recipe(model=model_name, dataset=dataset_name, image_size=size, epochs=epochs, seed=seed,
                  **family_settings(model_name))


def baseline_path(model_name: str, dataset_name: str, recipe: Recipe) -> Path:
    """``<data home>/baselines/<model>__<dataset>__<recipe key>.safetensors`` (+ ``.json`` beside it)."""
    dataset_name = canonical_name(dataset_name)
    if (recipe.model, recipe.dataset) != (model_name, dataset_name):
        raise ValueError(f"recipe is for {recipe.model} on {recipe.dataset}, "
                         f"not {model_name} on {dataset_name}")
    data, folder = dataset_name, folder_path(dataset_name)
    if folder is not None:
        data = "imagefolder-" + folder_key(folder)
    return subdir("baselines") / f"{model_name}__{data}__{recipe.key()}.safetensors"


def baseline_meta(path: Path) -> dict:
    """The JSON record written next to a baseline (recipe, accuracy, seconds, versions, classes)."""
    return json.loads(Path(path).with_suffix(".json").read_text())


def find_baseline(model_name: str, dataset_name: str, recipe: Recipe | None = None,
                  notes: list[str] | None = None) -> Path | None:
    """The cached baseline for this model, dataset and recipe (default :func:`recipe_for`), or None: the one in
    the user's data home (:func:`baseline_path`) first, then the one shipped with qcore (:data:`SHIPPED`, same
    file name). Either is a ``.safetensors`` with its ``.json`` record, loaded the same way. A damaged one (cut,
    empty, a broken record: :mod:`qcore.nets.baseline_check`) is passed over, the user's moved aside, and
    ``notes`` say which file and why."""
    recipe = recipe or recipe_for(model_name, dataset_name)
    path = baseline_path(model_name, dataset_name, recipe)
    for found in (path, SHIPPED / path.name):
        if found.is_file() and found.with_suffix(".json").is_file():
            if (bad := baseline_check.problem(found)) is None:
                return found
            aside = f"; moved aside as {baseline_check.move_aside(found).name}" if found == path else ""
            (notes if notes is not None else []).append(f"the cached baseline is damaged: {bad}{aside}; using "
                                                        "the next one (the shipped one, else a new training)")
    return None


def training_elsewhere(model_name: str, dataset_name: str, recipe: Recipe | None = None) -> bool:
    """True while a process (the app's worker, the CLI) trains this baseline: it holds its lock
    (:mod:`qcore.nets.baseline_lock`); a run that needs it waits, then loads it."""
    recipe = recipe or recipe_for(model_name, dataset_name)
    return baseline_lock.held_elsewhere(baseline_path(model_name, dataset_name, recipe))


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _augment(x: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    if kind == "none":
        return x
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if kind == "crop-flip":  # shift by up to 4 pixels, zero (the mean after normalizing) filling
        pad, size = 4, x.shape[-1]
        padded = F.pad(x, (pad, pad, pad, pad))
        dx, dy = torch.randint(0, 2 * pad + 1, (2, len(x)), generator=g).tolist()
        x = torch.stack([padded[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size] for i in range(len(x))])
    return x


def _logits(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]  # GoogLeNet / Inception named tuples


def evaluate(model: nn.Module, dataset, batch_size: int = 256,
             on_batch: Callable[[], None] | None = None) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``dataset``."""
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y in batches(dataset, batch_size):
            correct += int((predicted_class(_logits(model(x))) == y).sum())
            total += len(y)
            if on_batch is not None:
                on_batch()
    return correct / max(total, 1)


def _optimizer(model: nn.Module, recipe: Recipe, total_steps: int):
    decay = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on biases and norms
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=recipe.lr, fused=True)  # one kernel: 4x faster steps on CPU
    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total_steps,
                                                    pct_start=0.25, cycle_momentum=False)
    elif recipe.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def train_baseline(model_name: str, dataset: DatasetBundle, *, epochs: float | None = None, seed: int = 0,
                   progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None,
                   force: bool = False, recipe: Recipe | None = None) -> Path:
    """Train ``model_name`` on ``dataset`` (loaded as a sweep feeds it: :func:`qcore.nets.weights.load_dataset_for`),
    cache it, return the ``.safetensors`` path.

    Returns the cached file at once when it exists (unless ``force``). Only one process trains a baseline
    at a time (:mod:`qcore.nets.baseline_lock`): another one that trains it now is waited for (``progress`` says
    :data:`WAITING`), and its file is returned instead of training again. ``progress(done, total, message)``
    is called after every step and evaluation batch; ``cancel()`` is checked every few steps (and while
    waiting) and raises :class:`Cancelled`. The same seed gives the same weights (same torch build and thread
    count).
    """
    dataset_name = dataset.name
    if recipe is None:
        recipe = recipe_for(model_name, dataset_name, epochs, image_size=dataset.image_size, seed=seed)
    if (recipe.dataset, recipe.image_size) != (canonical_name(dataset_name), dataset.image_size):
        raise ValueError(f"the recipe is for {recipe.dataset} at {recipe.image_size} px, the dataset given is "
                         f"{dataset_name} at {dataset.image_size} px")
    path = baseline_path(model_name, dataset_name, recipe)
    if not force and (found := find_baseline(model_name, dataset_name, recipe)) is not None:
        return found
    check_input_size(model_name, recipe.image_size)

    def on_wait(seconds: float) -> None:
        if cancel is not None and cancel():
            raise Cancelled(f"waiting for the {model_name} baseline on {dataset_name} cancelled")
        if progress is not None:
            progress(0, 1, f"{WAITING} ({seconds:.0f} s so far); it is loaded when that one is saved")

    with baseline_lock.hold(path, on_wait) as waited:
        if not force and (found := find_baseline(model_name, dataset_name, recipe)) is not None:
            return found  # another process saved it (waited for, or just before the lock): nothing to train
        if waited and progress is not None:
            progress(0, 1, "the other process stopped without saving this baseline: training it here")
        _train(model_name, dataset, recipe, path, progress, cancel)
    return path


def _train(model_name: str, dataset: DatasetBundle, recipe: Recipe, path: Path, progress: ProgressFn | None,
           cancel: Callable[[], bool] | None) -> None:
    """Train and save (the caller holds the baseline's lock)."""
    dataset_name = dataset.name
    bundle = dataset
    g = torch.Generator().manual_seed(recipe.seed)
    train_set, test_set = bundle.train, bundle.test
    if recipe.train_limit and recipe.train_limit < len(train_set):
        train_set = torch.utils.data.Subset(train_set, torch.randperm(len(train_set), generator=g)
                                            [:recipe.train_limit].sort().values.tolist())
    if recipe.eval_limit and recipe.eval_limit < len(test_set):
        test_set = torch.utils.data.Subset(test_set, torch.randperm(len(test_set), generator=g)
                                           [:recipe.eval_limit].sort().values.tolist())
    n, bs = len(train_set), min(recipe.batch_size, len(train_set))
    per_epoch = max(1, n // bs)
    total = max(1, round(recipe.epochs * per_epoch))
    if recipe.max_steps:
        total = min(total, recipe.max_steps)
    eval_batches = math.ceil(len(test_set) / 256)

    torch.manual_seed(recipe.seed)
    model = build_model(model_name, bundle.num_classes, recipe.image_size, bn_momentum=recipe.bn_momentum)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt, sched = _optimizer(model, recipe, total)
    with tiny_map_convs(model):  # exact; resnet18 at 32x32 trains 2-3x faster
        model.train()
        start, step, loss_avg = time.perf_counter(), 0, None

        def report(done: int, what: str) -> None:
            if progress is not None:
                elapsed = time.perf_counter() - start
                eta = elapsed / max(done, 1) * (total + eval_batches - done)
                progress(done, total + eval_batches, f"{what}, ETA {_fmt_seconds(eta)}")

        while step < total:
            order = torch.randperm(n, generator=g)
            for s in range(0, per_epoch * bs, bs):
                if step >= total:
                    break
                if cancel is not None and step % 5 == 0 and cancel():
                    raise Cancelled(f"training {model_name} on {dataset_name} cancelled at step {step}/{total}")
                x, y = next(batches(torch.utils.data.Subset(train_set, order[s:s + bs].tolist()), bs))
                x = _augment(x, recipe.augment, g).contiguous(memory_format=fmt)
                loss = F.cross_entropy(_logits(model(x)), y,
                                       label_smoothing=recipe.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
                if not math.isfinite(loss_avg):
                    raise FloatingPointError(f"training {model_name} diverged (loss {loss_avg}) at step {step}; "
                                             "try a lower Recipe.lr")
                epoch, epochs = math.ceil(step / per_epoch), math.ceil(total / per_epoch)
                report(step, f"epoch {epoch}/{epochs}, loss {loss_avg:.3f}")
        train_seconds = time.perf_counter() - start
        done = [total]

        def on_eval() -> None:
            done[0] += 1
            if cancel is not None and cancel():
                raise Cancelled(f"evaluating {model_name} on {dataset_name} cancelled")
            report(done[0], "evaluating on the test split")

        accuracy = evaluate(model, test_set, on_batch=on_eval)
    _save(model, path, recipe, bundle, {
        "test_accuracy": accuracy, "test_images": len(test_set), "train_images": n, "steps": total,
        "train_seconds": round(train_seconds, 1), "final_loss": loss_avg})


def _save(model: nn.Module, path: Path, recipe: Recipe, bundle: DatasetBundle, results: dict) -> None:
    import torchvision
    from safetensors.torch import save

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={"recipe_key": recipe.key(), "model": recipe.model}))
    meta = {"model": recipe.model, "dataset": recipe.dataset, "recipe_key": recipe.key(),
            "recipe": asdict(recipe), **results, "seed": recipe.seed, "classes": bundle.classes,
            "image_size": recipe.image_size, "mean": list(bundle.mean), "std": list(bundle.std),
            "dataset_source": bundle.source, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "created": time.time()}
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())


def with_overrides(recipe: Recipe, **changes) -> Recipe:
    """A copy of ``recipe`` with some fields changed (validated again)."""
    return replace(recipe, **changes)
