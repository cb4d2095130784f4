"""Issue 24, item 5: the weight columns measure the BatchNorm-folded weight the kernels hold (oracle: torch's own
conv-bn fusion and torch's fake quantize), and Spearman's rank correlation (oracles: the no-ties formula, a
hand-ranked example with ties, scipy's ``spearmanr`` where importable)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch.nn.utils.fusion import fuse_conv_bn_weights

from qcore.layers.errors import ErrorSum, deployed, weight_error, weight_errors
from qcore.layers.row import DEFAULT_METRIC, METRICS, LayerRow
from qcore.layers.spearman import ranks, spearman
from qcore.quant.spec import QuantSpec

PER_TENSOR = QuantSpec("int8", granularity="per-tensor", backend="fx")


def _resnet_with_bn_statistics(seed: int = 0) -> torch.nn.Module:
    """A random resnet18 whose BatchNorms have trained-like statistics (a fresh one's fold is the identity)."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(num_classes=10).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_var.copy_(torch.rand(c) * 4 + 0.01)
            m.running_mean.copy_(torch.randn(c))
            m.weight.data.copy_(torch.randn(c) * 2)
            m.bias.data.copy_(torch.randn(c))
    return net


def _oracle_sqnr(conv, bn) -> float:
    """torch's fusion, then torch's symmetric per-tensor int8 fake quantize (scale = max|w| / 127.5)."""
    w, _ = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    w = w.detach().double()
    scale = float(w.abs().max()) / 127.5
    q = torch.fake_quantize_per_tensor_affine(w.float(), scale, 0, -128, 127).double()
    return 10 * math.log10(float((w * w).sum()) / float(((w - q) ** 2).sum()))


def test_weight_errors_are_on_the_folded_weight_as_torch_fuses_it():
    net = _resnet_with_bn_statistics()
    folded = deployed(net, PER_TENSOR)
    errs = weight_errors(folded, ["conv1", "layer1.0.conv2", "fc"], PER_TENSOR)
    assert errs["conv1"].sqnr == pytest.approx(_oracle_sqnr(net.conv1, net.bn1), abs=1e-3)
    assert errs["layer1.0.conv2"].sqnr == pytest.approx(_oracle_sqnr(net.layer1[0].conv2, net.layer1[0].bn2), abs=1e-3)
    assert errs["fc"].sqnr == pytest.approx(weight_error(net.fc, PER_TENSOR).sqnr)  # no BatchNorm after a Linear
    # the layer's own weight gives another figure: what the table showed before
    assert abs(weight_error(net.conv1, PER_TENSOR).sqnr - errs["conv1"].sqnr) > 0.5
    assert net.bn1.running_var.max() > 1.1  # (deployed copies: the model keeps its BatchNorms)
    dynamic = QuantSpec("int8", mode="dynamic", scheme="asymmetric")
    assert weight_errors(deployed(net, dynamic), ["conv1"], dynamic)["conv1"].sqnr == pytest.approx(
        weight_error(net.conv1, dynamic).sqnr)  # dynamic INT8 folds nothing


def test_the_table_measures_the_folded_weight(tmp_path, fashion_mnist, one_thread):
    from qcore.layers.sensitivity import measure_layers
    from qcore.runs.sweep import SweepConfig

    net = _resnet_with_bn_statistics(1)
    ckpt = tmp_path / "r18-bn.pt"
    torch.save(net.state_dict(), ckpt)
    config = SweepConfig(model="resnet18", weights=str(ckpt), calib_size=8, eval_limit=16, fp32_compiled=False)
    sens = measure_layers(config, PER_TENSOR, accuracy_columns=False, error_images=8, only=("conv1",))
    (row,) = sens.rows
    assert row.weight_sqnr_db == pytest.approx(_oracle_sqnr(net.conv1, net.bn1), abs=1e-3)


def test_ranks_average_ties():
    assert ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert ranks([3.0, 1.0, 2.0]) == [3.0, 1.0, 2.0]
    assert ranks([5, 5, 5]) == [2.0, 2.0, 2.0]


def test_spearman_without_ties_is_the_textbook_formula():
    x = [35.0, 23.0, 47.0, 17.0, 10.0, 43.0, 9.0, 6.0, 28.0]
    y = [30.0, 33.0, 45.0, 23.0, 8.0, 49.0, 12.0, 4.0, 31.0]
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    naive = 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry)) / (n * (n * n - 1))
    assert spearman(x, y) == pytest.approx(naive) and naive == pytest.approx(0.9)  # d^2 sums to 12
    assert spearman(x, [-v for v in y]) == pytest.approx(-0.9)


def test_spearman_with_ties_is_pearson_of_average_ranks():
    x = [1, 2, 2, 3]  # ranks 1, 2.5, 2.5, 4
    y = [1, 3, 2, 4]  # ranks 1, 3, 2, 4
    # by hand: centred ranks (-1.5, 0, 0, 1.5) and (-1.5, .5, -.5, 1.5): 4.5 / sqrt(4.5 * 5)
    assert spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_spearman_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (40,), generator=g).tolist()  # many ties
    y = (torch.tensor(x) + torch.randint(0, 4, (40,), generator=g)).tolist()
    assert spearman(x, y) == pytest.approx(float(stats.spearmanr(x, y).statistic), abs=1e-12)


def test_spearman_refuses_bad_input_saying_what_is_allowed():
    with pytest.raises(ValueError, match="pairs: 3 x values and 2 y values"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3 pairs, got 2"):
        spearman([1, 2], [1, 2])
    with pytest.raises(ValueError, match="a number in every pair"):
        spearman([1, None, 3], [1, 2, 3])


def test_the_default_metric_is_a_measured_metric_and_rows_from_before_read_back():
    assert DEFAULT_METRIC in METRICS and not DEFAULT_METRIC.endswith("_only_float")
    old = {"layer": "fc", "position": 20, "kind": "Linear 512->10", "params": 5120, "weight_sqnr_db": 40.0,
           "weight_rel_mse": 1e-4}
    row = LayerRow.from_dict(old)  # a row stored before activation rows: "kind" held the description
    assert (row.kind, row.op) == ("layer", "Linear 512->10")
    assert LayerRow.from_dict(row.to_dict()) == row
    e = ErrorSum()
    e.add(torch.ones(1, 4), torch.ones(1, 4))
    assert e.sqnr == math.inf
