"""qcore.data.base: the calibration/evaluation split, batching and uint8 image tensors."""

import pytest
import torch

from qcore.data import base
from qcore.data.base import DatasetBundle, DatasetError, TensorImages, batches, split_calib_eval

pytestmark = pytest.mark.usefixtures("one_thread")


def _bundle(n_train=100, n_test=40, size=8) -> DatasetBundle:
    g = torch.Generator().manual_seed(0)
    make = lambda n: TensorImages(torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g),
                                  torch.arange(n) % 10, size, (0.5,) * 3, (0.25,) * 3)
    return DatasetBundle("synthetic", [str(i) for i in range(10)], make(n_train), make(n_test), size,
                         (0.5,) * 3, (0.25,) * 3, source="memory")


def test_split_calib_eval_is_seeded_disjoint_and_deterministic():
    b = _bundle()
    calib, evals = split_calib_eval(b, 30, 10, seed=3)
    again = split_calib_eval(b, 30, 10, seed=3)
    other = split_calib_eval(b, 30, 10, seed=4)
    assert calib.dataset is b.train and evals.dataset is b.test  # disjoint: different splits
    assert calib.indices == again[0].indices and evals.indices == again[1].indices
    assert calib.indices != other[0].indices
    assert len(set(calib.indices)) == 30 and calib.indices == sorted(calib.indices)
    assert split_calib_eval(b, 30, None, seed=3)[1].indices == list(range(40))
    with pytest.raises(DatasetError, match="calib_size must be from 1 to 100"):
        split_calib_eval(b, 101, None, seed=0)
    with pytest.raises(DatasetError, match="eval_limit"):
        split_calib_eval(b, 10, 0, seed=0)


def test_big_sizes_are_resized_per_batch(monkeypatch):
    monkeypatch.setattr(base, "_RESIZED_BYTES", 0)
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    ds = base.tensor_set(images, torch.arange(6), 64, (0.5,) * 3, (0.25,) * 3)
    assert ds.images.shape[-1] == 28  # kept small in memory
    eager = TensorImages(base._resize_u8(images, 64), torch.arange(6), 64, (0.5,) * 3, (0.25,) * 3)
    x, _ = next(batches(ds, 6))
    assert x.shape == (6, 3, 64, 64) and torch.equal(x, next(batches(eager, 6))[0])


def test_batches_fast_path_equals_items():
    b = _bundle()
    sub = torch.utils.data.Subset(b.train, [5, 1, 7, 42, 3])
    got = list(batches(sub, 2))
    assert [len(y) for _, y in got] == [2, 2, 1]
    xs = torch.cat([x for x, _ in got])
    assert torch.allclose(xs, torch.stack([sub[i][0] for i in range(5)]))
    assert torch.cat([y for _, y in got]).tolist() == [sub[i][1] for i in range(5)]
