"""What every qcore dataset shares: the bundle, the error, uint8 image tensors, splits and batches.

All sources (:mod:`qcore.data.builtin`, :mod:`qcore.data.imagefolder`) give ``(x, y)`` items with ``x`` a
normalized float32 ``3xSxS`` tensor. Images are kept as ``uint8`` and normalized per batch: 70,000 28x28
images are 55 MB, their float copies four times that, and normalizing a batch costs nothing next to a
forward pass. This module is the leaf of the package: it imports nothing else from qcore.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["DatasetError", "DatasetBundle", "TensorImages", "INTERPOLATIONS", "FOLDER_PREFIX", "folder_name",
           "tensor_set", "split_calib_eval", "batches"]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
FOLDER_PREFIX = "imagefolder:"  # read only by qcore.data.registry.parse_name
_RESIZED_BYTES = 512 * 2**20  # tensor sets resized once up to this size, else per batch


class DatasetError(ValueError):
    """A dataset that cannot be found, read or split; the message says what to do."""


def folder_name(path) -> str:
    """The dataset name of a class-per-folder tree: ``imagefolder:<path>``."""
    return f"{FOLDER_PREFIX}{path}"


@dataclass
class DatasetBundle:
    """Train and test splits of normalized ``3 x image_size x image_size`` images, and what they are."""

    name: str
    classes: list[str]
    train: Dataset
    test: Dataset
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    skipped_files: int = 0
    imagenet_indices: list[int] | None = None
    notes: list[str] = field(default_factory=list)
    resize: int | None = None  # image folders: the short side before the centre crop to image_size
    interpolation: str = "bilinear"  # image folders: how they were resized

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class TensorImages(Dataset):
    """``uint8`` images ``N x C x H x W`` (C is 1 or 3) with labels; resizes and normalizes on access."""

    def __init__(self, images: Tensor, labels: Tensor, size: int, mean: Sequence[float],
                 std: Sequence[float]):
        self.images, self.labels, self.size = images, labels.long(), size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.take(torch.tensor([int(i)]))
        return x[0], int(y[0])

    def take(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """The batch at ``idx``: ``(float32 N x 3 x S x S, int64 N)``."""
        x = _resize_u8(self.images[idx], self.size).float().div_(255.0)
        return (x - self.mean) / self.std, self.labels[idx]


def _resize_u8(images: Tensor, size: int) -> Tensor:
    """Bilinear (antialiased) resize of a ``uint8`` batch, rounded back to ``uint8``."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for s in range(0, len(images), 4096):
        part = F.interpolate(images[s:s + 4096].float(), size=(size, size), mode="bilinear",
                             antialias=True, align_corners=False)
        out[s:s + 4096] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def tensor_set(images: Tensor, labels: Tensor, size: int, mean, std) -> TensorImages:
    """A :class:`TensorImages` of ``size`` pixels a side, resized once here when that fits in memory."""
    if images.numel() // (images.shape[-1] * images.shape[-2]) * size * size <= _RESIZED_BYTES:
        images = _resize_u8(images, size)  # once, here; else every batch is resized when taken
    return TensorImages(images, labels, size, mean, std)


def split_calib_eval(bundle: DatasetBundle, calib_size: int, eval_limit: int | None,
                     seed: int) -> tuple[Subset, Subset]:
    """Calibration images: a seeded subset of ``train``; evaluation images: a seeded subset of ``test``.

    The two splits never share an image (train and test are disjoint) and the same seed always gives
    the same indices, in ascending order.
    """
    n_train, n_test = len(bundle.train), len(bundle.test)
    if not isinstance(calib_size, int) or not 1 <= calib_size <= n_train:
        raise DatasetError(f"calib_size must be from 1 to {n_train} (the training split), not {calib_size!r}")
    if eval_limit is not None and (not isinstance(eval_limit, int) or eval_limit < 1):
        raise DatasetError(f"eval_limit must be None (all {n_test} test images) or a positive int, "
                           f"not {eval_limit!r}")
    calib = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:calib_size]
    if eval_limit is None or eval_limit >= n_test:
        evals = torch.arange(n_test)
    else:
        evals = torch.randperm(n_test, generator=torch.Generator().manual_seed(seed + 1))[:eval_limit]
    return (Subset(bundle.train, calib.sort().values.tolist()),
            Subset(bundle.test, evals.sort().values.tolist()))


def _tensor_view(dataset: Dataset) -> tuple[TensorImages | None, Tensor | None]:
    if isinstance(dataset, TensorImages):
        return dataset, torch.arange(len(dataset))
    if isinstance(dataset, Subset):
        base, idx = _tensor_view(dataset.dataset)
        if base is not None:
            return base, idx[torch.as_tensor(dataset.indices, dtype=torch.long)]
    return None, None


def batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``(x, y)`` batches in order; tensor-backed sets (and Subsets of them) skip the per-item path."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    base, idx = _tensor_view(dataset)
    if base is not None:
        for s in range(0, len(idx), batch_size):
            yield base.take(idx[s:s + batch_size])
        return
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        yield x, torch.as_tensor(y)
