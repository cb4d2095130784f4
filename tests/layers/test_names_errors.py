import math

import pytest
import torch
import torchvision
from torch import nn

from qcore.backends.layer_names import (
    LayerError,
    check_keep_float,
    check_names,
    layer_names,
    model_layer_names,
    near_names,
)
from qcore.layers.errors import ErrorSum, sqnr_db, weight_error
from qcore.layers.paired import correct, paired_delta
from qcore.metrics import stats
from qcore.quant.spec import QuantSpec, SpecError


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_layer_names_are_torchvisions_conv_and_linear_names(resnet):
    names = layer_names(resnet)
    assert len(names) == 21 and names[0] == "conv1" and names[-1] == "fc" and "layer1.0.conv2" in names
    assert "layer2.0.downsample.0" in names and "bn1" not in names


def test_model_layer_names_on_the_meta_device_are_the_built_models(resnet):
    assert model_layer_names("resnet18") == layer_names(resnet)
    mobile = model_layer_names("mobilenet_v3_small")
    assert len(mobile) == 54 and mobile[0] == "features.0.0" and mobile[-1] == "classifier.3"
    with pytest.raises(ValueError, match="resnet19"):
        model_layer_names("resnet19")
    names = layer_names(resnet)
    assert check_names(QuantSpec(keep_float=("fc",)), names) == names
    with pytest.raises(SpecError, match="no layer 'layer1.0.conv3'; near names: layer1.0.conv2"):
        check_names(QuantSpec(keep_float=("layer1.0.conv3",)), names)


def test_a_model_without_layers_is_refused():
    with pytest.raises(LayerError, match="no quantizable layer"):
        layer_names(nn.Sequential(nn.ReLU(), nn.Flatten()))


def test_unknown_names_get_the_nearest_and_an_empty_quantization_is_refused(resnet):
    assert set(near_names("layer1.0.conv3", layer_names(resnet))[:2]) == {"layer1.0.conv1", "layer1.0.conv2"}
    with pytest.raises(SpecError, match=r"no layer 'layer1\.0\.conv3'; near names: layer1\.0\.conv[12], layer1\.0"):
        check_keep_float(QuantSpec("int8", keep_float=("layer1.0.conv3",)), resnet)
    with pytest.raises(SpecError, match="keeps all 21 layers in FP32, so nothing would be quantized"):
        check_keep_float(QuantSpec("int8", keep_float=tuple(layer_names(resnet))), resnet)
    assert len(check_keep_float(QuantSpec("int8", keep_float=("fc", "conv1")), resnet)) == 21


def test_error_sums_follow_the_definitions():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    q = torch.tensor([[3.0, 3.0], [1.0, 0.0]])
    e = ErrorSum()
    e.add(x[:1], q[:1])
    e.add(x[1:], q[1:])  # sums over batches, not means of means
    assert e.rel_mse == pytest.approx(1.0 / 26.0)
    assert e.sqnr == pytest.approx(10 * math.log10(26.0))
    assert e.cosine == pytest.approx((21 / (5 * math.sqrt(18)) + 1.0) / 2)
    assert sqnr_db(1.0, 0.0) == math.inf and math.isnan(sqnr_db(0.0, 1.0))


def test_weight_error_falls_with_bits_and_finer_granularity(resnet):
    layer = resnet.layer1[0].conv1
    int8 = weight_error(layer, QuantSpec("int8", granularity="per-channel")).sqnr
    int8_t = weight_error(layer, QuantSpec("int8", granularity="per-tensor")).sqnr
    int4_t = weight_error(layer, QuantSpec("int4", mode="weight-only", granularity="per-tensor")).sqnr
    int4_g = weight_error(layer, QuantSpec("int4", mode="weight-only", granularity="per-group")).sqnr
    assert 35 < int8_t < int8 < 50  # about 6 dB a bit: INT8 near 40 dB, INT4 near 16
    assert 10 < int4_t < int4_g < 25 and int8_t - int4_t > 20


def test_paired_delta_interval():
    a = torch.tensor([1.0] * 60 + [0.0] * 20 + [1.0] * 920)
    b = torch.tensor([0.0] * 60 + [1.0] * 20 + [1.0] * 920)
    d = paired_delta(a, b)
    assert d.delta == pytest.approx(-4.0) and d.n == 1000
    # the one paired rule of qcore.metrics.stats (Newcombe), on the counts: both 920, lost 60, gained 20, neither 0
    lo, hi = (100 * v for v in stats.paired_delta(920, 60, 20, 0)[1:])
    assert (d.low, d.high) == (pytest.approx(lo), pytest.approx(hi)) and d.low < -4.0 < d.high < -2.0
    assert d.text() == f"-4.00 [{lo:+.2f}, {hi:+.2f}]"
    assert correct(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="same images"):
        paired_delta(a, b[:10])
