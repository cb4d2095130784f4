import pytest
import torch

from qcore.quant.observers import (
    get_calibrator,
    kl_threshold_bin,
    list_calibrations,
    nearest_rank,
    weight_range,
)

ONE_TO_100 = torch.arange(1, 101, dtype=torch.float32)


def test_every_method_is_registered():
    assert list_calibrations() == ["minmax", "moving-average", "percentile", "entropy", "mse"]
    with pytest.raises(ValueError, match="allowed: minmax"):
        get_calibrator("kl")


def test_minmax_known_answer():
    c = get_calibrator("minmax")
    c.update(torch.tensor([1.0, -2.0]))
    c.update(torch.tensor([5.0]))
    assert c.solve(0, 255, False) == (-2.0, 5.0)


def test_moving_average_known_answer():
    c = get_calibrator("moving-average")
    c.update(torch.tensor([0.0, 10.0]))
    c.update(torch.tensor([0.0, 110.0]))
    lo, hi = c.solve(0, 255, False)
    assert hi == pytest.approx(10 + 0.01 * (110 - 10))
    assert lo == 0.0


def test_percentile_99_of_1_to_100_is_99():
    assert nearest_rank(ONE_TO_100, 99) == 99.0
    c = get_calibrator("percentile", 99.0)
    c.update(ONE_TO_100)
    assert c.solve(0, 255, False) == (1.0, 99.0)
    assert c.solve(-128, 127, True) == (-99.0, 99.0)


def test_percentile_reservoir_stays_bounded_and_close():
    torch.manual_seed(0)
    c = get_calibrator("percentile", 99.0)
    for _ in range(30):
        c.update(torch.rand(20_000))
    assert c.sample.numel() <= 262_144
    assert c.solve(0, 255, False)[1] == pytest.approx(0.99, abs=0.01)


def _normal_with_outlier():
    g = torch.Generator().manual_seed(0)
    return torch.cat([torch.randn(100_000, generator=g), torch.tensor([50.0])])


def test_entropy_clips_a_lone_outlier():
    c = get_calibrator("entropy")
    c.update(_normal_with_outlier())
    lo, hi = c.solve(-128, 127, True)
    assert lo == -hi
    assert 3.0 < hi < 6.0  # N(0,1) tails, not the outlier at 50


def test_entropy_keeps_the_range_of_uniform_data():
    c = get_calibrator("entropy")
    c.update(torch.linspace(-1, 1, 20_001))
    lo, hi = c.solve(-128, 127, True)
    assert hi == pytest.approx(1.0, abs=0.02)


def test_kl_search_prefers_full_range_without_tail():
    hist = torch.ones(2048, dtype=torch.float64)
    assert kl_threshold_bin(hist, 128) >= 2000


def test_mse_clips_dense_data_but_keeps_a_heavy_outlier():
    c = get_calibrator("mse")
    c.update(torch.cat([torch.linspace(-1, 1, 10_001), torch.tensor([8.0])]))
    lo, hi = c.solve(-128, 127, True)
    assert hi < 8.0  # at 8.0 the step is 0.063: clipping the outlier a bit costs less
    assert lo == -hi
    c = get_calibrator("mse")
    c.update(torch.linspace(-1, 1, 10_001))
    assert c.solve(0, 255, False) == pytest.approx((-1.0, 1.0), abs=0.02)


def test_histogram_growth_is_exact():
    c = get_calibrator("mse")
    c.update(torch.tensor([0.5, -0.5]))
    c.update(torch.tensor([3.9]))
    assert c.R == 4.0  # 0.5 doubled three times: the smallest power-of-two growth that holds 3.9
    assert c.hist.sum().item() == 3


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_weight_range_per_row(method):
    rows = torch.tensor([[1.0, 2.0, 3.0, 100.0], [-4.0, 0.0, 1.0, 2.0]])
    lo, hi = weight_range(rows, method, -8, 7, symmetric=False, percentile=75.0)
    assert lo.shape == (2,) and hi.shape == (2,)
    assert torch.all(hi <= rows.amax(1)) and torch.all(lo >= rows.amin(1))
    if method == "minmax":
        assert hi.tolist() == [100.0, 2.0]
    if method == "percentile":
        assert hi.tolist() == [3.0, 1.0]  # nearest rank: 3rd of 4


def test_weight_range_refuses_entropy():
    with pytest.raises(ValueError, match="does not apply to weights"):
        weight_range(torch.ones(1, 4), "entropy", -8, 7, True)
