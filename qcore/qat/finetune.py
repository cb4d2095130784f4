"""The fine-tune both a QAT model and its FP32 control go through: same images, same order, same schedule.

:class:`Schedule` is taken from the baseline's training recipe (:func:`qcore.nets.train.recipe_for`: optimizer,
batch size, weight decay, label smoothing) scaled down as the usual short-QAT rule says: about 1% of the
original peak learning rate (``qat_lr_scale``), decayed to zero by a cosine over the fine-tune, no warm-up.
mobilenet_v3_small's recipe peaks at 5e-3 with AdamW: its QAT runs at 5e-5 (NNCF's one-epoch example uses
Adam at 1e-5; torchvision's QAT reference uses SGD at 1e-4). Observers and BatchNorm statistics freeze at
fractions of the fine-tune (``qat_freeze_observers`` 0.4, ``qat_freeze_bn`` 0.3: the PT2E tutorial's epochs 4
and 3 of 10); the control freezes its BatchNorm statistics at the same point.

``qat_epochs`` may be a fraction: 0.1 epoch of Fashion-MNIST's 60,000 images at batch 128 is 47 steps.
The curve is evaluated at the start and after each fifth of the steps (:data:`CURVE_POINTS`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qcore.metrics.measure import predicted_class
from qcore.quant.spec import QuantSpec

__all__ = ["CURVE_POINTS", "Schedule", "schedule_for", "finetune", "top1"]

CURVE_POINTS = 5  # evaluations after the start: at each fifth of the fine-tune's steps
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Schedule:
    """Every setting of the fine-tune (its :meth:`key` names cached results)."""

    model: str
    epochs: float
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    label_smoothing: float
    freeze_bn: float
    freeze_observers: float
    seed: int
    train_images: int

    @property
    def steps(self) -> int:
        return max(1, round(self.epochs * max(1, self.train_images // self.batch_size)))

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def schedule_for(model: str, dataset: str, spec: QuantSpec, train_images: int, image_size: int) -> Schedule:
    """The fine-tune of ``spec`` (a QAT spec) for ``model``: the baseline recipe's settings, scaled down."""
    from qcore.nets.train import recipe_for

    recipe = recipe_for(model, dataset, image_size=image_size)
    return Schedule(model=model, epochs=spec.qat_epochs, batch_size=min(recipe.batch_size, train_images),
                    optimizer=recipe.optimizer, lr=recipe.lr * spec.qat_lr_scale, weight_decay=recipe.weight_decay,
                    label_smoothing=recipe.label_smoothing, freeze_bn=spec.qat_freeze_bn,
                    freeze_observers=spec.qat_freeze_observers, seed=spec.qat_seed, train_images=train_images)


def top1(model: nn.Module, batches) -> float:
    """Top-1 accuracy in percent over ``(x, y)`` batches (the model is put in eval mode)."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            correct += int((predicted_class(model(x)) == y).sum())
            total += len(y)
    return 100.0 * correct / max(total, 1)


def _optimizer(model: nn.Module, s: Schedule):
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if s.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=s.lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=s.lr)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.steps)


def finetune(model: nn.Module, train_set, eval_batches, s: Schedule, *, freeze_bn: Callable[[nn.Module], None],
             freeze_observers: Callable[[nn.Module], None] | None = None, progress: ProgressFn | None = None,
             cancel: Callable[[], bool] | None = None, what: str = "fine-tune") -> dict:
    """Train ``model`` in place for ``s.steps`` steps; return the curve and the cost.

    ``{"step": [...], "epoch": [...], "train_loss": [...], "top1": [...], "seconds": training seconds
    (evaluations excluded)}``; ``train_loss`` at a point is the mean loss of the steps since the previous point
    (None at step 0). Raises :class:`qcore.nets.train.Cancelled` when ``cancel()`` returns True (checked every step).
    """
    g = torch.Generator().manual_seed(s.seed)
    # dropout draws from torch's global generator: seeded here too, so the same schedule trains the same model
    # whatever ran before it in the process (a cached control, another spec). The caller's state is restored.
    rng = torch.random.get_rng_state()
    torch.manual_seed(s.seed)
    try:
        return _train(model, train_set, eval_batches, s, g, freeze_bn, freeze_observers, progress, cancel, what)
    finally:
        torch.random.set_rng_state(rng)


def _train(model, train_set, eval_batches, s, g, freeze_bn, freeze_observers, progress, cancel, what) -> dict:
    from qcore.data.base import batches
    from qcore.nets.train import Cancelled

    per_epoch = max(1, s.train_images // s.batch_size)
    marks = sorted({round(s.steps * i / CURVE_POINTS) for i in range(1, CURVE_POINTS + 1)} - {0})
    bn_at, obs_at = math.floor(s.steps * s.freeze_bn), math.floor(s.steps * s.freeze_observers)
    curve = {"step": [0], "epoch": [0.0], "train_loss": [None], "top1": [top1(model, eval_batches)]}
    opt, sched = _optimizer(model, s)
    frozen_bn = frozen_obs = False
    losses: list[float] = []
    seconds, start = 0.0, time.perf_counter()
    step, order = 0, torch.empty(0, dtype=torch.long)
    while step < s.steps:
        if step % per_epoch == 0:
            order = torch.randperm(s.train_images, generator=g)
        if cancel is not None and cancel():
            raise Cancelled(f"{what} cancelled at step {step}/{s.steps}")
        model.train()
        if step >= bn_at and not frozen_bn:
            frozen_bn = True
        if frozen_bn:
            freeze_bn(model)
        if step >= obs_at and freeze_observers is not None and not frozen_obs:
            freeze_observers(model)
            frozen_obs = True
        at = (step % per_epoch) * s.batch_size
        idx = order[at:at + s.batch_size].tolist()
        x, y = next(batches(torch.utils.data.Subset(train_set, idx), len(idx)))
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y, label_smoothing=s.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        seconds += time.perf_counter() - t0
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{what} diverged (loss {loss.item()}) at step {step}; lower qat_lr_scale")
        losses.append(loss.item())
        step += 1
        if step in marks:
            curve["step"].append(step)
            curve["epoch"].append(round(step / per_epoch, 4))
            curve["train_loss"].append(sum(losses) / len(losses))
            curve["top1"].append(top1(model, eval_batches))
            losses = []
        if progress is not None:
            elapsed = time.perf_counter() - start
            eta = elapsed / step * (s.steps - step)
            progress(step, s.steps, f"{what}: step {step}/{s.steps}, loss {loss.item():.3f}, ETA {eta:.0f} s")
    model.eval()
    return {**curve, "seconds": round(seconds, 2)}
