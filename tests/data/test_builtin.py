"""qcore.data.builtin: the real Fashion-MNIST (skipped with a reason where it is not installed)."""

import pytest
import torch

from qcore import data
from qcore.data import builtin

pytestmark = pytest.mark.usefixtures("one_thread")


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
    raw = builtin._fashion_raw(str(fashion_mnist))[0][0, 0]
    x, _ = b.train[0]
    back = (x[0] * 0.3530 + 0.2860) * 255  # at 28 the pixels are the file's, untouched
    assert torch.allclose(back, raw.float(), atol=1e-3)
    assert b.test[5][0].shape == (3, 28, 28)


def test_find_fashion_mnist_prefers_qcore_data(tmp_path, monkeypatch):
    for stem in data.FASHION_FILES:
        (tmp_path / f"{stem}.gz").write_bytes(b"")  # names are enough: finding must not read files
    monkeypatch.setenv("QCORE_DATA", str(tmp_path))
    assert data.find_fashion_mnist() == tmp_path
