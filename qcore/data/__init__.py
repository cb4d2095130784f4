"""Datasets for qcore: built-in ones by name, image folders, deterministic splits and batches.

- :mod:`qcore.data.base`: what every dataset shares (the bundle, the error, uint8 image tensors, the
  calibration/evaluation split, batching); the leaf of the package.
- :mod:`qcore.data.builtin`: Fashion-MNIST (offline) and CIFAR-10 (one download).
- :mod:`qcore.data.imagefolder`: ``imagefolder:<path>``, any class-per-folder tree.
- :mod:`qcore.data.registry`: names to loaders, labels and default sizes; the one list the CLI and
  the app read.

The names most callers need are re-exported here (``from qcore.data import load_dataset, batches``).
"""

from qcore.data.base import INTERPOLATIONS, DatasetBundle, DatasetError, TensorImages, batches, split_calib_eval
from qcore.data.builtin import CIFAR10_CLASSES, FASHION_CLASSES, FASHION_FILES, fetch, find_fashion_mnist, how_to_get
from qcore.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD
from qcore.data.registry import (
    canonical_name,
    dataset_label,
    default_image_size,
    folder_name,
    folder_path,
    get_dataset,
    list_datasets,
    load_dataset,
    parse_name,
)

__all__ = ["DatasetBundle", "DatasetError", "TensorImages", "INTERPOLATIONS", "batches", "split_calib_eval",
           "FASHION_FILES", "FASHION_CLASSES", "CIFAR10_CLASSES", "fetch", "find_fashion_mnist", "how_to_get",
           "IMAGENET_MEAN", "IMAGENET_STD", "canonical_name", "dataset_label", "default_image_size", "folder_name",
           "folder_path", "get_dataset", "list_datasets", "load_dataset", "parse_name"]
