"""Calibration draws (disjoint, seeded, draw 0 the one-draw sample) and fixed calibration lists."""

import pytest
import torch

from qcore.data import DatasetError, split_calib_eval
from qcore.data.base import DatasetBundle, TensorImages
from qcore.data.draws import check_draws, draw_indices, read_calib_list, train_paths
from qcore.data.registry import load_dataset


def _bundle(n_train: int = 100) -> DatasetBundle:
    def images(n):
        return TensorImages(torch.zeros(n, 1, 8, 8, dtype=torch.uint8), torch.zeros(n), 8, (0.5,) * 3, (0.5,) * 3)

    return DatasetBundle("t", ["a", "b"], images(n_train), images(20), 8, (0.5,) * 3, (0.5,) * 3, "test")


def test_draws_are_disjoint_seeded_and_draw_zero_is_the_one_draw_sample():
    draws = draw_indices(100, 30, 3, seed=5)
    assert [len(d) for d in draws] == [30, 30, 30] and all(d == sorted(d) for d in draws)
    assert len(set(draws[0]) | set(draws[1]) | set(draws[2])) == 90  # disjoint
    assert draws == draw_indices(100, 30, 3, seed=5)  # reproducible
    assert draws[1] != draw_indices(100, 30, 3, seed=6)[1]
    calib, _ = split_calib_eval(_bundle(100), 30, None, 5)
    assert draws[0] == calib.indices  # a one-draw sweep calibrates on draw 0
    assert draw_indices(100, 30, 1, seed=5) == draws[:1]
    assert sorted(sum(draw_indices(10, 5, 2, 0), [])) == list(range(10))  # uses every image when it must


def test_bad_draw_counts_name_the_value_and_the_limit():
    with pytest.raises(DatasetError, match="calib_draws must be at least 1, not 0"):
        check_draws(100, 10, 0)
    with pytest.raises(DatasetError, match=r"calib_draws=4 disjoint draws of calib_size=30 images need 120 "
                                           r"training images; the training split has 100, enough for at most 3"):
        draw_indices(100, 30, 4, seed=0)


def test_a_list_of_indices(tmp_path):
    f = tmp_path / "calib.txt"
    f.write_text("# MLPerf-style list\n7\n3  # a comment\n\n99\n")
    indices, sha = read_calib_list(f, 100)
    assert indices == [3, 7, 99] and len(sha) == 64
    f.write_text("3\n100\n")
    with pytest.raises(DatasetError, match=r"line 2 of .*: index 100 is not in the training split; allowed: 0 to 99"):
        read_calib_list(f, 100)
    f.write_text("3\n3\n")
    with pytest.raises(DatasetError, match="names 1 image"):
        read_calib_list(f, 100)
    f.write_text("img.png\n")
    with pytest.raises(DatasetError, match="'img.png' is not an index, and this dataset is not read from files"):
        read_calib_list(f, 100)
    f.write_text("# nothing\n")
    with pytest.raises(DatasetError, match="names no image"):
        read_calib_list(f, 100)
    with pytest.raises(DatasetError, match="does not exist"):
        read_calib_list(tmp_path / "none.txt", 100)


def test_a_list_of_paths_in_an_image_folder(tmp_path, colour_folder):
    bundle = load_dataset(colour_folder, 16)
    paths = train_paths(bundle.train)
    assert paths is not None and len(paths) == len(bundle.train)
    f = tmp_path / "calib.txt"
    f.write_text(f"{paths[4]}\n2\n")
    assert read_calib_list(f, len(paths), paths)[0] == [2, 4]
    f.write_text(f"{paths[4].parent / 'missing.png'}\n")
    with pytest.raises(DatasetError, match="missing.png does not exist"):
        read_calib_list(f, len(paths), paths)
    test_file = next(p for p in paths[0].parent.iterdir() if p not in paths)  # a test-split image
    f.write_text(f"{test_file}\n")
    with pytest.raises(DatasetError, match=f"is not one of the {len(paths)} training images"):
        read_calib_list(f, len(paths), paths)
