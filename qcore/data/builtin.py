"""The built-in datasets: Fashion-MNIST (offline) and CIFAR-10 (one download).

- ``fashion-mnist``: the real 70,000 images, found in ``$QCORE_DATA``, in Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) or in
  torchvision's download cache; parsed once from the IDX files into ``uint8`` tensors.
- ``cifar10``: through torchvision (a download the first time, MD5-checked).

Both are registered by name in :mod:`qcore.data.registry`, which is what callers use.
"""

from __future__ import annotations

import gzip
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from qcore.data.base import DatasetBundle, DatasetError, TensorImages, tensor_set
from qcore.env.paths import subdir

__all__ = ["FASHION_FILES", "FASHION_CLASSES", "CIFAR10_CLASSES", "how_to_get", "find_fashion_mnist", "find_cifar10",
           "fetch", "load_fashion_mnist", "load_cifar10"]

FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")
_DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
_CIFAR_FOLDER = "cifar-10-batches-py"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Channel statistics of each training set (Fashion-MNIST: one grey channel, replicated).
_FASHION_MEAN, _FASHION_STD = (0.2860,) * 3, (0.3530,) * 3
_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def how_to_get(name: str) -> str:
    """What to do when ``name`` is not on this machine."""
    if name == "fashion-mnist":
        return ("Get it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or put the four IDX "
                ".gz files in a folder and set QCORE_DATA to it, or run 'python -m qcore fetch-data "
                "fashion-mnist' once while online.")
    return (f"Run 'python -m qcore fetch-data {name}' once while online (torchvision downloads it into "
            f"{subdir('datasets')}).")


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
    candidates += [_DEBIAN_FASHION, subdir("datasets") / "FashionMNIST" / "raw"]
    for folder in candidates:
        if all(_fashion_file(folder, stem) for stem in FASHION_FILES):
            return folder
    return None


def find_cifar10() -> Path | None:
    """The folder torchvision unpacked CIFAR-10 into, or None."""
    folder = subdir("datasets") / _CIFAR_FOLDER
    return folder if folder.is_dir() else None


def fetch(name: str) -> Path:
    """Download ``name`` through torchvision into the qcore data folder; return where it is."""
    import torchvision.datasets as tvd

    root = subdir("datasets")
    kinds = {"fashion-mnist": (tvd.FashionMNIST, root / "FashionMNIST" / "raw"),
             "cifar10": (tvd.CIFAR10, root / _CIFAR_FOLDER)}
    if name not in kinds:
        raise DatasetError(f"fetch-data knows {', '.join(map(repr, kinds))}, not {name!r}")
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
    return (tensor_set(xtr, ytr, size, _FASHION_MEAN, _FASHION_STD),
            tensor_set(xte, yte, size, _FASHION_MEAN, _FASHION_STD))


def load_fashion_mnist(size: int) -> DatasetBundle:
    """The 70,000 Fashion-MNIST images at ``size`` pixels a side (downloaded when nowhere on this machine)."""
    folder = find_fashion_mnist()
    if folder is None:
        folder = fetch("fashion-mnist")
    train, test = _fashion_sets(str(folder), size)
    return DatasetBundle("fashion-mnist", list(FASHION_CLASSES), train, test, size, _FASHION_MEAN, _FASHION_STD,
                         source=str(folder))


@lru_cache(maxsize=2)
def _cifar_sets(root: str, size: int) -> tuple[TensorImages, TensorImages]:
    import torchvision.datasets as tvd

    out = []
    for train in (True, False):  # torchvision checks the files' MD5 before unpickling them
        ds = tvd.CIFAR10(root, train=train, download=False)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out.append(tensor_set(x, torch.tensor(ds.targets), size, _CIFAR_MEAN, _CIFAR_STD))
    return out[0], out[1]


def load_cifar10(size: int) -> DatasetBundle:
    """The 60,000 CIFAR-10 images at ``size`` pixels a side (downloaded by torchvision the first time)."""
    root = subdir("datasets")
    if find_cifar10() is None:
        fetch("cifar10")
    try:
        train, test = _cifar_sets(str(root), size)
    except RuntimeError as exc:
        raise DatasetError(f"CIFAR-10 in {root} is damaged ({exc}); delete it and fetch again") from exc
    return DatasetBundle("cifar10", list(CIFAR10_CLASSES), train, test, size, _CIFAR_MEAN, _CIFAR_STD,
                         source=str(root / _CIFAR_FOLDER))
