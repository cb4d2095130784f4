"""qcore.data.imagefolder: generated class-per-folder trees, their conversion, split and caching."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from qcore import data
from qcore.data import DatasetError, imagefolder

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_folder(root, per_class=6, classes=("cat", "dog")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / c / f"{i}.jpg")
    return root


@pytest.fixture
def messy_folder(tmp_path):
    root = _write_folder(tmp_path / "pets")
    Image.new("CMYK", (30, 30), (0, 255, 0, 0)).save(root / "cat" / "cmyk.jpg")  # a CMYK JPEG
    Image.new("L", (20, 36), 128).save(root / "dog" / "grey.png")
    Image.new("RGBA", (32, 32), (255, 0, 0, 0)).save(root / "dog" / "clear.png")  # fully transparent red
    (root / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "dog" / "notes.txt").write_text("not an image, not counted")
    (root / "empty").mkdir()
    return root


def test_image_folder_converts_modes_and_skips_unreadable(messy_folder):
    b = data.load_dataset(f"imagefolder:{messy_folder}", image_size=32)
    assert b.classes == ["cat", "dog"] and b.skipped_files == 1
    assert len(b.train) + len(b.test) == 15 and len(b.test) >= 2
    assert any("'empty'" in n for n in b.notes) and b.imagenet_indices is None
    for ds in (b.train, b.test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 32, 32) and y in (0, 1)
    # the transparent image is composited on white: every pixel is 1.0 after un-normalizing
    mean = torch.tensor(imagefolder.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(imagefolder.IMAGENET_STD).view(3, 1, 1)
    whites = [ds[i][0] * std + mean for ds in (b.train, b.test) for i in range(len(ds))]
    assert any(torch.allclose(w, torch.ones_like(w), atol=0.01) for w in whites)


def test_image_folder_split_is_disjoint_and_stable(messy_folder):
    a = data.load_dataset(f"imagefolder:{messy_folder}", image_size=16)
    imagefolder._folder_sets.cache_clear()
    b = data.load_dataset(f"imagefolder:{messy_folder}", image_size=16)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    train_rows = {bytes(t.numpy()) for t in a.train.images}
    assert not any(bytes(t.numpy()) in train_rows for t in a.test.images)


def test_a_changed_image_is_seen_and_changes_the_folder_key(messy_folder):
    name = f"imagefolder:{messy_folder}"
    before, key = data.load_dataset(name, image_size=16), imagefolder.folder_key(messy_folder)
    assert data.load_dataset(name, image_size=16).train is before.train  # unchanged: cached
    assert imagefolder.folder_key(messy_folder) == key
    target = messy_folder / "cat" / "0.jpg"
    stat = target.stat()
    Image.new("RGB", (40, 50), (255, 255, 255)).save(target)  # rewritten in place, same name
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even within one mtime tick
    after = data.load_dataset(name, image_size=16)
    assert after.train is not before.train and imagefolder.folder_key(messy_folder) != key
    def white(b):
        return sum(int(t.min()) == 255 for t in torch.cat([b.train.images, b.test.images]))

    assert white(after) == white(before) + 1  # the rewritten, all-white image is what was loaded


def test_large_image_folders_are_decoded_on_access(messy_folder, monkeypatch):
    monkeypatch.setattr(imagefolder, "_EAGER_BYTES", 0)
    imagefolder._folder_sets.cache_clear()
    b = data.load_dataset(f"imagefolder:{messy_folder}", image_size=24)
    assert isinstance(b.train, imagefolder.FileImages) and b.skipped_files == 1
    x, y = next(data.batches(b.train, 4))
    assert x.shape == (4, 3, 24, 24) and y.dtype == torch.int64
    imagefolder._folder_sets.cache_clear()


def test_empty_and_single_class_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders.*at least two"):
        data.load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    single = _write_folder(tmp_path / "single", per_class=2, classes=("only",))
    with pytest.raises(DatasetError, match="single class .'only'"):
        data.load_dataset(f"imagefolder:{single}")
    with pytest.raises(DatasetError, match="does not exist"):
        data.load_dataset(f"imagefolder:{tmp_path / 'missing'}")


def test_imagenet_folders_map_to_class_indices(tmp_path):
    synsets = _write_folder(tmp_path / "s", per_class=2, classes=("n01440764", "n01443537", "n15075141"))
    assert data.load_dataset(f"imagefolder:{synsets}", 16).imagenet_indices == [0, 1, 999]
    names = _write_folder(tmp_path / "n", per_class=2, classes=("goldfish", "tench"))
    assert data.load_dataset(f"imagefolder:{names}", 16).imagenet_indices == [1, 0]
    assert len(imagefolder._imagenet_wnids()) == 1000 and imagefolder._imagenet_wnids()[134] == "n02012849"


def test_folders_resize_as_asked_and_refuse_bad_preprocessing(tmp_path):
    root = _write_folder(tmp_path / "p", per_class=3)
    name = f"imagefolder:{root}"
    plain = data.load_dataset(name, 16)
    assert (plain.resize, plain.interpolation) == (18, "bilinear")  # 16 / 0.875, torchvision's ratio
    bicubic = data.load_dataset(name, 16, resize=20, interpolation="bicubic")
    assert (bicubic.resize, bicubic.interpolation) == (20, "bicubic")
    assert not torch.equal(plain.train.images, bicubic.train.images)
    assert imagefolder.imagenet_folder(root) is False
    assert imagefolder.imagenet_folder(_write_folder(tmp_path / "s", 1, ("n01440764", "n01443537")))
    with pytest.raises(DatasetError, match=r"interpolation must be one of \('bilinear', 'bicubic', 'nearest'\)"):
        data.load_dataset(name, 16, interpolation="lanczos")
    with pytest.raises(DatasetError, match=r"resize must be an integer >= image_size \(16\), not 8"):
        data.load_dataset(name, 16, resize=8)
    with pytest.raises(DatasetError, match="apply to image folders, not to fashion-mnist"):
        data.load_dataset("fashion-mnist", 32, interpolation="bicubic")
