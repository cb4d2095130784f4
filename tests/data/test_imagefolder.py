"""qcore.data: the real Fashion-MNIST, generated image folders, splits, batching and safe unzipping."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qcore import data, imagefolder
from qcore.data import DatasetBundle, DatasetError, TensorImages

pytestmark = pytest.mark.usefixtures("one_thread")


def _bundle(n_train=100, n_test=40, size=8) -> DatasetBundle:
    g = torch.Generator().manual_seed(0)
    make = lambda n: TensorImages(torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g),
                                  torch.arange(n) % 10, size, (0.5,) * 3, (0.25,) * 3)
    return DatasetBundle("synthetic", [str(i) for i in range(10)], make(n_train), make(n_test), size,
                         (0.5,) * 3, (0.25,) * 3, source="memory")


# --- Fashion-MNIST (the real files; skipped with a reason where they are not installed) ---

def test_fashion_mnist_is_the_real_70k_set(fashion_mnist):
    b = data.load_dataset("fashion-mnist")
    assert (len(b.train), len(b.test), b.num_classes, b.image_size) == (60000, 10000, 10, 32)
    assert b.source == str(fashion_mnist)
    assert torch.bincount(b.train.labels).tolist() == [6000] * 10  # known answer: balanced classes
    x, y = b.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey replicated to three channels
    xb, yb = next(data.batches(data.split_calib_eval(b, 2000, None, seed=0)[0], 2000))
    assert abs(float(xb.mean())) < 0.1 and 0.85 < float(xb.std()) < 1.15  # its own mean/std


def test_fashion_mnist_other_sizes(fashion_mnist):
    b = data.load_dataset("fashion-mnist", image_size=28)
    raw = data._fashion_raw(str(fashion_mnist))[0][0, 0]
    x, _ = b.train[0]
    back = (x[0] * 0.3530 + 0.2860) * 255  # at 28 the pixels are the file's, untouched
    assert torch.allclose(back, raw.float(), atol=1e-3)
    assert b.test[5][0].shape == (3, 28, 28)


def test_find_fashion_mnist_prefers_qcore_data(tmp_path, monkeypatch):
    for stem in data.FASHION_FILES:
        (tmp_path / f"{stem}.gz").write_bytes(b"")  # names are enough: finding must not read files
    monkeypatch.setenv("QCORE_DATA", str(tmp_path))
    assert data.find_fashion_mnist() == tmp_path


def test_unknown_dataset_and_bad_size_say_what_is_allowed():
    with pytest.raises(DatasetError, match="fashion-mnist.*cifar10.*imagefolder"):
        data.load_dataset("mnist")
    with pytest.raises(DatasetError, match="8 to 1024"):
        data.load_dataset("fashion-mnist", image_size=4)


# --- splits and batches ---

def test_split_calib_eval_is_seeded_disjoint_and_deterministic():
    b = _bundle()
    calib, evals = data.split_calib_eval(b, 30, 10, seed=3)
    again = data.split_calib_eval(b, 30, 10, seed=3)
    other = data.split_calib_eval(b, 30, 10, seed=4)
    assert calib.dataset is b.train and evals.dataset is b.test  # disjoint: different splits
    assert calib.indices == again[0].indices and evals.indices == again[1].indices
    assert calib.indices != other[0].indices
    assert len(set(calib.indices)) == 30 and calib.indices == sorted(calib.indices)
    assert data.split_calib_eval(b, 30, None, seed=3)[1].indices == list(range(40))
    with pytest.raises(DatasetError, match="calib_size must be from 1 to 100"):
        data.split_calib_eval(b, 101, None, seed=0)
    with pytest.raises(DatasetError, match="eval_limit"):
        data.split_calib_eval(b, 10, 0, seed=0)


def test_big_sizes_are_resized_per_batch(monkeypatch):
    monkeypatch.setattr(data, "_RESIZED_BYTES", 0)
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    ds = data._tensor_set(images, torch.arange(6), 64, (0.5,) * 3, (0.25,) * 3)
    assert ds.images.shape[-1] == 28  # kept small in memory
    eager = data.TensorImages(data._resize_u8(images, 64), torch.arange(6), 64, (0.5,) * 3, (0.25,) * 3)
    x, _ = next(data.batches(ds, 6))
    assert x.shape == (6, 3, 64, 64) and torch.equal(x, next(data.batches(eager, 6))[0])


def test_batches_fast_path_equals_items():
    b = _bundle()
    sub = torch.utils.data.Subset(b.train, [5, 1, 7, 42, 3])
    got = list(data.batches(sub, 2))
    assert [len(y) for _, y in got] == [2, 2, 1]
    xs = torch.cat([x for x, _ in got])
    assert torch.allclose(xs, torch.stack([sub[i][0] for i in range(5)]))
    assert torch.cat([y for _, y in got]).tolist() == [sub[i][1] for i in range(5)]


# --- image folders ---

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
    mean, std = torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1), torch.tensor(data.IMAGENET_STD).view(3, 1, 1)
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


# --- uploaded zips ---

def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_unpack_zip_returns_the_class_root(tmp_path):
    blob = _zip({f"upload/{c}/{i}.png": _png() for c in ("a", "b") for i in range(3)})
    root = imagefolder.unpack_zip(blob, tmp_path / "dest")
    assert root == tmp_path / "dest" / "upload"
    assert data.load_dataset(f"imagefolder:{root}", 16).classes == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["dest"]  # no temporary folder left behind


@pytest.mark.parametrize("evil", ["../evil.png", "a/../../evil.png", "/tmp/qcore-test-evil.png",
                                  "C:/evil.png", "..\\evil.png"])
def test_unpack_zip_refuses_paths_outside(tmp_path, evil):
    blob = _zip({"a/1.png": _png(), evil: b"owned"})
    with pytest.raises(DatasetError, match="refused"):
        imagefolder.unpack_zip(blob, tmp_path / "up" / "dest")
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing written, not even the destination
    assert not Path("/tmp/qcore-test-evil.png").exists()


def test_unpack_zip_refuses_symlinks_bombs_and_non_zips(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        imagefolder.unpack_zip(buf.getvalue(), tmp_path / "d1")
    many = _zip({f"a/{i}.png": b"x" for i in range(5)})
    with pytest.raises(DatasetError, match="5 files; at most 4"):
        imagefolder.unpack_zip(many, tmp_path / "d2", max_files=4)
    bomb = _zip({"a/zeros.png": b"\0" * 100_000})
    assert len(bomb) < 2_000
    with pytest.raises(DatasetError, match="100,000 bytes; at most 50,000"):
        imagefolder.unpack_zip(bomb, tmp_path / "d3", max_bytes=50_000)
    # a directory that under-declares the size: zipfile stops at the declared size, the CRC fails
    lying = bytearray(bomb)
    central = lying.rfind(b"PK\x01\x02")
    lying[central + 24:central + 28] = (1000).to_bytes(4, "little")
    with pytest.raises(DatasetError):
        imagefolder.unpack_zip(bytes(lying), tmp_path / "d4", max_bytes=50_000)
    not_zip = tmp_path / "photo.zip"
    not_zip.write_bytes(_png())  # the name says zip, the content does not
    with pytest.raises(DatasetError, match="not a zip"):
        imagefolder.unpack_zip(not_zip, tmp_path / "d5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.zip"]
