"""Datasets for qcore: the real images, deterministic splits and safe uploads.

Three sources, all giving ``(x, y)`` items with ``x`` a normalized float32 ``3xSxS`` tensor:

- ``fashion-mnist``: the real 70,000 images, found in ``$QCORE_DATA``, in Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) or in
  torchvision's download cache; parsed once from the IDX files into ``uint8`` tensors.
- ``cifar10``: through torchvision (a download the first time).
- ``imagefolder:<path>``: any class-per-folder tree (``qcore.imagefolder``). ImageNet synset folders
  (``n01440764``) or ImageNet class names map onto the pretrained models' indices.

Images are kept as ``uint8`` and normalized per batch: 70,000 28x28 images are 55 MB,
their float copies four times that, and normalizing a batch costs nothing next to a
forward pass.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from qcore.paths import subdir


class DatasetError(ValueError):
    """A dataset that cannot be found, read or split; the message says what to do."""


FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Channel statistics of each training set (Fashion-MNIST: one grey channel, replicated).
FASHION_MEAN, FASHION_STD = (0.2860,) * 3, (0.3530,) * 3
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_RESIZED_BYTES = 512 * 2**20  # tensor sets resized once up to this size, else per batch



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


def _tensor_set(images: Tensor, labels: Tensor, size: int, mean, std) -> TensorImages:
    if images.numel() // (images.shape[-1] * images.shape[-2]) * size * size <= _RESIZED_BYTES:
        images = _resize_u8(images, size)  # once, here; else every batch is resized when taken
    return TensorImages(images, labels, size, mean, std)


def how_to_get(name: str) -> str:
    """What to do when ``name`` is not on this machine."""
    if name == "fashion-mnist":
        return ("Get it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or put the four IDX "
                ".gz files in a folder and set QCORE_DATA to it, or run 'python -m qcore fetch-data "
                "fashion-mnist' once while online.")
    return (f"Run 'python -m qcore fetch-data {name}' once while online (torchvision downloads it into "
            f"{subdir('datasets')}).")


def list_datasets() -> list[str]:
    """Names for a select box; a class-per-folder tree is ``imagefolder:<path>``."""
    return ["fashion-mnist", "cifar10"]


def default_image_size(name: str) -> int:
    """The side of the images :func:`load_dataset` yields when no size is asked for."""
    kind, _ = _parse_name(name)
    return 224 if kind == "imagefolder" else 32


def _parse_name(name: str) -> tuple[str, str]:
    if name in ("fashion-mnist", "cifar10"):
        return name, ""
    if isinstance(name, str) and name.startswith("imagefolder:") and len(name) > len("imagefolder:"):
        return "imagefolder", name[len("imagefolder:"):]
    raise DatasetError(f"unknown dataset {name!r}; allowed: 'fashion-mnist', 'cifar10' or "
                       "'imagefolder:<path>'")


def canonical_name(name: str) -> str:
    """``name`` with an image folder's path made absolute, so one folder always has one name."""
    kind, path = _parse_name(name)
    return f"imagefolder:{Path(path).expanduser().resolve()}" if kind == "imagefolder" else name


def _fashion_file(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
    return None


def find_fashion_mnist() -> Path | None:
    """The folder holding the four Fashion-MNIST IDX files, or None. Cheap: only looks at names."""
    candidates = []
    env = os.environ.get("QCORE_DATA")
    if env:
        base = Path(env).expanduser()
        candidates += [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    candidates += [DEBIAN_FASHION, subdir("datasets") / "FashionMNIST" / "raw"]
    for folder in candidates:
        if all(_fashion_file(folder, stem) for stem in FASHION_FILES):
            return folder
    return None


def fetch(name: str) -> Path:
    """Download ``name`` through torchvision into the qcore data folder; return where it is."""
    import torchvision.datasets as tvd

    root = subdir("datasets")
    kinds = {"fashion-mnist": (tvd.FashionMNIST, root / "FashionMNIST" / "raw"),
             "cifar10": (tvd.CIFAR10, root / "cifar-10-batches-py")}
    if name not in kinds:
        raise DatasetError(f"fetch-data knows 'fashion-mnist' and 'cifar10', not {name!r}")
    cls, where = kinds[name]
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # urllib, socket and torchvision's own errors all mean "could not download"
        raise DatasetError(f"could not download {name} ({type(exc).__name__}: {exc}). "
                           + how_to_get(name)) from exc
    return where


def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: {data.size} bytes for shape {dims}")
    return data.reshape(dims)


@lru_cache(maxsize=2)
def _fashion_raw(folder: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    arrays = [_read_idx(_fashion_file(Path(folder), stem)) for stem in FASHION_FILES]
    xtr, ytr, xte, yte = (torch.from_numpy(a.copy()) for a in arrays)
    if xtr.shape[1:] != (28, 28) or len(xtr) != len(ytr) or len(xte) != len(yte) or int(ytr.max()) > 9:
        raise DatasetError(f"the Fashion-MNIST files in {folder} have unexpected shapes {tuple(xtr.shape)}")
    return xtr.unsqueeze(1), ytr.long(), xte.unsqueeze(1), yte.long()


@lru_cache(maxsize=3)
def _fashion_sets(folder: str, size: int) -> tuple[TensorImages, TensorImages]:
    xtr, ytr, xte, yte = _fashion_raw(folder)
    return (_tensor_set(xtr, ytr, size, FASHION_MEAN, FASHION_STD),
            _tensor_set(xte, yte, size, FASHION_MEAN, FASHION_STD))


def _load_fashion(size: int) -> DatasetBundle:
    folder = find_fashion_mnist()
    if folder is None:
        folder = fetch("fashion-mnist")
    train, test = _fashion_sets(str(folder), size)
    return DatasetBundle("fashion-mnist", list(FASHION_CLASSES), train, test, size, FASHION_MEAN, FASHION_STD,
                         source=str(folder))


@lru_cache(maxsize=2)
def _cifar_sets(root: str, size: int) -> tuple[TensorImages, TensorImages]:
    import torchvision.datasets as tvd

    out = []
    for train in (True, False):  # torchvision checks the files' MD5 before unpickling them
        ds = tvd.CIFAR10(root, train=train, download=False)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out.append(_tensor_set(x, torch.tensor(ds.targets), size, CIFAR_MEAN, CIFAR_STD))
    return out[0], out[1]


def _load_cifar(size: int) -> DatasetBundle:
    root = subdir("datasets")
    if not (root / "cifar-10-batches-py").is_dir():
        fetch("cifar10")
    try:
        train, test = _cifar_sets(str(root), size)
    except RuntimeError as exc:
        raise DatasetError(f"CIFAR-10 in {root} is damaged ({exc}); delete it and fetch again") from exc
    return DatasetBundle("cifar10", list(CIFAR10_CLASSES), train, test, size, CIFAR_MEAN, CIFAR_STD,
                         source=str(root / "cifar-10-batches-py"))


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def load_dataset(name: str, image_size: int | None = None, *, resize: int | None = None,
                 interpolation: str = "bilinear") -> DatasetBundle:
    """Load ``name`` ("fashion-mnist", "cifar10", "imagefolder:<path>") at ``image_size`` pixels a side.

    Image folders are resized so their short side is ``resize`` (default ``image_size / 0.875``, as
    torchvision's ImageNet evaluation: 256 for 224) with ``interpolation``, then centre-cropped."""
    kind, path = _parse_name(name)
    size = default_image_size(name) if image_size is None else image_size
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024:
        raise DatasetError(f"image_size must be an integer from 8 to 1024, not {image_size!r}")
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize < size):
        raise DatasetError(f"resize must be an integer >= image_size ({size}), not {resize!r}")
    if interpolation not in INTERPOLATIONS:
        raise DatasetError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}")
    if kind != "imagefolder" and (resize is not None or interpolation != "bilinear"):
        raise DatasetError(f"resize and interpolation apply to image folders, not to {name}")
    if kind == "fashion-mnist":
        return _load_fashion(size)
    if kind == "cifar10":
        return _load_cifar(size)
    from qcore.imagefolder import load_folder

    return load_folder(Path(path), size, resize, interpolation)


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
