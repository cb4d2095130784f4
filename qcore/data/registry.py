"""Datasets by name: the one table the CLI, the app and the library read (``register_dataset`` /
``list_datasets`` / ``get_dataset``).

A name is either a built-in dataset (``fashion-mnist``, ``cifar10``) or ``imagefolder:<path>``, any
class-per-folder tree. :func:`parse_name` is the only place that reads that prefix and
:func:`folder_name` the only one that writes it, so one folder always has one name:

>>> parse_name("cifar10")
('cifar10', None)
>>> folder_name("/data/pets")
'imagefolder:/data/pets'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qcore.data import builtin
from qcore.data.base import FOLDER_PREFIX, INTERPOLATIONS, DatasetBundle, DatasetError, folder_name

__all__ = ["DatasetInfo", "FOLDER_PREFIX", "FOLDER_KIND", "FOLDER_IMAGE_SIZE", "register_dataset", "list_datasets",
           "get_dataset", "parse_name", "folder_name", "folder_path", "canonical_name", "default_image_size",
           "dataset_label", "load_dataset"]

FOLDER_KIND = "imagefolder"
FOLDER_IMAGE_SIZE = 224  # an image folder's default side: what torchvision's ImageNet models were evaluated at


@dataclass(frozen=True)
class DatasetInfo:
    """A built-in dataset: its name, how it is shown, what it holds, and how it is loaded or found."""

    name: str
    label: str  # "Fashion-MNIST": select boxes, captions, reports
    summary: str  # "70,000 28x28 grey images, 10 classes"
    image_size: int  # the side images are loaded at when no size is asked for
    load: Callable[[int], DatasetBundle]
    find: Callable[[], Path | None]  # where it is on this machine, None when it is not (cheap)
    missing: str  # what happens, or what to do, when find() gives None
    classes: tuple[str, ...] = ()  # the class names, in label order (known without loading it)


_BUILTIN: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a named dataset (a duplicate name, or one that looks like a folder name, is refused)."""
    if info.name in _BUILTIN or info.name.startswith(FOLDER_PREFIX):
        raise ValueError(f"dataset {info.name!r} is already registered or is a folder name")
    _BUILTIN[info.name] = info
    return info


register_dataset(DatasetInfo("fashion-mnist", "Fashion-MNIST", "70,000 28x28 grey images, 10 classes", 32,
                             builtin.load_fashion_mnist, builtin.find_fashion_mnist,
                             "not found. " + builtin.how_to_get("fashion-mnist"), tuple(builtin.FASHION_CLASSES)))
register_dataset(DatasetInfo("cifar10", "CIFAR-10", "60,000 32x32 colour images, 10 classes", 32,
                             builtin.load_cifar10, builtin.find_cifar10,
                             "downloaded through torchvision on first use (online)", tuple(builtin.CIFAR10_CLASSES)))


def list_datasets() -> list[str]:
    """The built-in names, for a select box or ``--dataset`` help; a folder is ``imagefolder:<path>``."""
    return list(_BUILTIN)


def _allowed() -> str:
    return ", ".join(repr(n) for n in _BUILTIN) + f" or '{FOLDER_PREFIX}<path>'"


def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a built-in dataset; raises :class:`DatasetError` naming the allowed ones."""
    if name not in _BUILTIN:
        raise DatasetError(f"unknown dataset {name!r}; allowed: {_allowed()}")
    return _BUILTIN[name]


def parse_name(name: str) -> tuple[str, Path | None]:
    """``(kind, folder)``: ``("fashion-mnist", None)`` or ``("imagefolder", Path(<path>))``."""
    if name in _BUILTIN:
        return name, None
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX) and len(name) > len(FOLDER_PREFIX):
        return FOLDER_KIND, Path(name[len(FOLDER_PREFIX):])
    raise DatasetError(f"unknown dataset {name!r}; allowed: {_allowed()}")


def folder_path(name: str) -> Path | None:
    """The folder an ``imagefolder:`` name points at (as written), None for a built-in dataset."""
    return parse_name(name)[1]


def canonical_name(name: str) -> str:
    """``name`` with an image folder's path made absolute, so one folder always has one name."""
    folder = folder_path(name)
    return folder_name(folder.expanduser().resolve()) if folder is not None else name


def default_image_size(name: str) -> int:
    """The side of the images :func:`load_dataset` yields when no size is asked for."""
    kind, _ = parse_name(name)
    return FOLDER_IMAGE_SIZE if kind == FOLDER_KIND else _BUILTIN[kind].image_size


def dataset_label(name: str) -> str:
    """A short human name: ``Fashion-MNIST``; an uploaded folder (``.../<16 hex digits>/<root>``) is
    ``upload 1a2b3c4d/<root>``, any other folder ``folder <last part>``."""
    if name in _BUILTIN:
        return _BUILTIN[name].label
    try:
        folder = folder_path(name)
    except DatasetError:
        return str(name)
    digest = next((p for p in reversed(folder.parts) if len(p) == 16 and p.isalnum()), "")
    return f"upload {digest[:8]}/{folder.name[:24]}" if digest else f"folder {folder.name[:32]}"


def load_dataset(name: str, image_size: int | None = None, *, resize: int | None = None,
                 interpolation: str = "bilinear") -> DatasetBundle:
    """Load ``name`` ("fashion-mnist", "cifar10", "imagefolder:<path>") at ``image_size`` pixels a side.

    Image folders are resized so their short side is ``resize`` (default ``image_size / 0.875``, as
    torchvision's ImageNet evaluation: 256 for 224) with ``interpolation``, then centre-cropped."""
    kind, folder = parse_name(name)
    size = default_image_size(name) if image_size is None else image_size
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024:
        raise DatasetError(f"image_size must be an integer from 8 to 1024, not {image_size!r}")
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize < size):
        raise DatasetError(f"resize must be an integer >= image_size ({size}), not {resize!r}")
    if interpolation not in INTERPOLATIONS:
        raise DatasetError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}")
    if folder is None:
        if resize is not None or interpolation != "bilinear":
            raise DatasetError(f"resize and interpolation apply to image folders, not to {name}")
        return _BUILTIN[kind].load(size)
    from qcore.data.imagefolder import load_folder  # PIL and the folder scan only when a folder is asked for

    return load_folder(folder, size, resize, interpolation)
