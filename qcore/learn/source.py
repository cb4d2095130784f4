"""Where the Learn page's tensors come from: a model with its weights, and real images of its dataset.

This is the one place :mod:`qcore.learn` imports model loading: the sweeps' own path
(``load_dataset_for`` then ``load_model``), so a layer seen here is the layer a sweep quantizes.
Calibration and evaluation images are the sweeps' too (:func:`qcore.data.split_calib_eval` with
:class:`qcore.runs.sweep.SweepConfig`'s sizes and seed): 256 training images in batches of 32, and 2,000
test images.

Loading never trains: a missing baseline (minutes of training) raises :class:`MissingBaseline`
naming the command that trains it, so that a page can offer only the weights that exist.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from qcore import data
from qcore.nets.weights import LoadedModel, WeightsError, load_dataset_for, load_model

__all__ = ["MissingBaseline", "Source", "baseline_path", "missing_baseline_message", "Loaded", "load",
           "fold_batchnorm", "calibration_batches", "evaluation_set", "test_images"]


class MissingBaseline(WeightsError):
    """No cached baseline for this model and dataset; the message says how to train one."""


def _sweep_defaults() -> dict:
    from qcore.runs.sweep import SweepConfig  # the sweeps' sizes and seed: one policy

    d = SweepConfig()
    return {"calib_size": d.calib_size, "calib_batch_size": d.calib_batch_size, "eval_limit": d.eval_limit,
            "eval_batch_size": d.eval_batch_size, "seed": d.seed}


@dataclass(frozen=True)
class Source:
    """A model, its weights (``"baseline"``, ``"pretrained"`` or a checkpoint's path) and its dataset."""

    model: str = "resnet18"
    dataset: str = "fashion-mnist"
    weights: str = "baseline"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Source:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def baseline_path(source: Source):
    """The cached baseline file for ``source`` (None when there is none yet)."""
    from qcore.nets import train

    return train.find_baseline(source.model, source.dataset)


def missing_baseline_message(source: Source) -> str:
    return (f"no trained {source.model} baseline for {source.dataset} is cached yet, and training one takes "
            f"minutes: run 'python -m qcore train --model {source.model} --dataset {source.dataset}' (or any "
            "Sweep or Explore run with weights 'baseline'), or choose a checkpoint")


@dataclass
class Loaded:
    """The FP32 model (never modified: quantize a deep copy) and its dataset."""

    source: Source
    loaded: LoadedModel
    bundle: data.DatasetBundle

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model


def load(source: Source) -> Loaded:
    """The model and dataset of ``source``, by the sweeps' path; raises :class:`MissingBaseline` rather
    than train, ``WeightsError`` / ``ValueError`` with the reason for weights that cannot be had."""
    if source.weights not in ("baseline", "pretrained") and not str(source.weights).strip():
        raise WeightsError("choose weights: baseline, pretrained or a checkpoint file")
    bundle = load_dataset_for(source.model, source.dataset)
    if source.weights == "baseline" and baseline_path(source) is None:
        raise MissingBaseline(missing_baseline_message(source))
    loaded = load_model(source.model, bundle, source.weights)
    return Loaded(source, loaded, bundle)


def fold_batchnorm(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """A copy of ``model`` with each BatchNorm folded into the convolution before it (``w * gamma /
    sqrt(var + eps)`` per output channel), and a note: the weights as the sweeps quantize them (the
    weight-only backend folds with this same function; torch.ao's static INT8 fuses conv-bn alike).
    Layer names are kept."""
    from qcore.backends.weight_only import fold_batchnorm as fold

    return fold(copy.deepcopy(model).eval())


def calibration_batches(loaded: Loaded) -> list[torch.Tensor]:
    """The sweeps' calibration images (seeded subset of the training split), in their batches."""
    d = _sweep_defaults()
    calib, _ = data.split_calib_eval(loaded.bundle, d["calib_size"], 1, loaded.source.seed)
    return [x for x, _ in data.batches(calib, d["calib_batch_size"])]


def evaluation_set(loaded: Loaded, limit: int | None) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[int]]:
    """Batches of the seeded evaluation subset of the test split, and each image's index in the test split."""
    d = _sweep_defaults()
    _, evals = data.split_calib_eval(loaded.bundle, 1, limit, loaded.source.seed)
    return list(data.batches(evals, d["eval_batch_size"])), list(evals.indices)


def test_images(bundle: data.DatasetBundle, indices: list[int]) -> list[np.ndarray]:
    """Test images ``indices`` as the eye sees them: normalization undone, ``uint8`` ``H x W x 3``."""
    mean = torch.tensor(bundle.mean).view(3, 1, 1)
    std = torch.tensor(bundle.std).view(3, 1, 1)
    out = []
    for i in indices:
        x, _ = bundle.test[int(i)]
        img = (x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
        out.append(img.permute(1, 2, 0).numpy())
    return out
