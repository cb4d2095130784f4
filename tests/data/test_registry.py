"""qcore.data.registry: datasets by name, the one parser of ``imagefolder:``, labels and default sizes."""

from pathlib import Path

import pytest

from qcore import data
from qcore.data import DatasetError


def test_unknown_dataset_and_bad_size_say_what_is_allowed():
    with pytest.raises(DatasetError, match="fashion-mnist.*cifar10.*imagefolder"):
        data.load_dataset("mnist")
    with pytest.raises(DatasetError, match="8 to 1024"):
        data.load_dataset("fashion-mnist", image_size=4)


def test_the_registry_lists_the_built_in_datasets_with_their_labels_and_sizes():
    assert data.list_datasets() == ["fashion-mnist", "cifar10"]
    assert [data.dataset_label(n) for n in data.list_datasets()] == ["Fashion-MNIST", "CIFAR-10"]
    assert [data.default_image_size(n) for n in data.list_datasets()] == [32, 32]
    assert data.default_image_size("imagefolder:/any") == 224
    assert data.get_dataset("cifar10").summary.startswith("60,000 32x32 colour images")
    with pytest.raises(DatasetError, match="allowed: 'fashion-mnist', 'cifar10' or 'imagefolder:<path>'"):
        data.get_dataset("imagenet")


def test_one_parser_for_image_folder_names(tmp_path, monkeypatch):
    assert data.parse_name("fashion-mnist") == ("fashion-mnist", None)
    assert data.parse_name("imagefolder:/a/b") == ("imagefolder", Path("/a/b"))
    assert data.folder_path(data.folder_name(tmp_path)) == tmp_path
    monkeypatch.chdir(tmp_path)
    assert data.canonical_name("imagefolder:pets") == f"imagefolder:{tmp_path / 'pets'}"
    assert data.canonical_name("cifar10") == "cifar10"
    for bad in ("imagefolder:", "folder:/x", "", None):
        with pytest.raises(DatasetError, match="unknown dataset"):
            data.parse_name(bad)


def test_labels_of_uploaded_and_other_folders():
    assert data.dataset_label("imagefolder:/h/uploads/datasets/0123456789abcdef/pets") == "upload 01234567/pets"
    assert data.dataset_label("imagefolder:/data/my-pets") == "folder my-pets"
