"""qcore.nets.models: the torchvision registry, building with a sized head, input-size checks, head surgery."""

from __future__ import annotations

import pytest
import torch
import torchvision

from qcore.nets import models
from qcore.nets.models import ModelInputError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_list_models_is_torchvision_classification():
    names = models.list_models()
    assert {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "vit_b_16", "maxvit_t"} <= set(names)
    assert "fasterrcnn_resnet50_fpn" not in names and len(names) >= 80


def test_model_info_without_building(monkeypatch):
    models.model_info.cache_clear()

    def refuse(*a, **k):
        raise AssertionError("model_info must not build the model")

    monkeypatch.setattr(torchvision.models.resnet.ResNet, "__init__", refuse)
    info = models.model_info("resnet18")
    assert info.params == 11_689_512 and info.gflops == pytest.approx(1.814)
    assert (info.min_input_size, info.default_input_size) == (1, 224)
    assert models.model_info("inception_v3").default_input_size == 299
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*list_models"):
        models.model_info("resnet19")


SMALL = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "squeezenet1_1",
         "shufflenet_v2_x0_5", "mnasnet0_5", "googlenet", "regnet_x_400mf"]
LARGE = ["densenet121", "vit_b_16", "swin_t", "convnext_tiny", "inception_v3", "maxvit_t", "alexnet",
         "vgg11_bn"]


@pytest.mark.parametrize("name", SMALL)
def test_head_adapted_to_ten_classes_at_32px(name):
    torch.manual_seed(0)
    model = models.build_model(name, 10, input_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    head = model.get_submodule(models.head_name(model))
    assert (head.out_features if isinstance(head, torch.nn.Linear) else head.out_channels) == 10


@pytest.mark.parametrize("name", LARGE)
def test_head_adapted_on_the_meta_device(name):
    size = 32 if models._input_problem(name, 32) is None else 224  # inception, maxvit, alexnet: 224
    with torch.device("meta"):
        model = models.build_model(name, 10, input_size=size).eval()
        assert model(torch.empty(1, 3, size, size)).shape == (1, 10)


def test_batchnorm_momentum_for_training_from_scratch():
    bns = lambda m: [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert {b.momentum for b in bns(models.build_model("mobilenet_v3_small", 10))} == {0.1}
    assert {b.momentum for b in bns(models.build_model("mobilenet_v3_small", 10, bn_momentum=None))} == {0.01}


def test_check_input_size_explains():
    models.check_input_size("resnet18", 32)
    models.check_input_size("vit_b_16", 32)  # built for 32x32: two by two patches
    models.check_input_size("regnet_y_400mf", 32)  # checked from metadata (not meta-device buildable)
    with pytest.raises(ModelInputError, match="inception_v3 cannot take 32x32.*smallest size.* is 96"):
        models.check_input_size("inception_v3", 32)
    with pytest.raises(ModelInputError, match="multiple of 16"):
        models.check_input_size("vit_b_16", 40)
    with pytest.raises(ModelInputError, match="maxvit_t cannot take 32x32"):
        models.check_input_size("maxvit_t", 32)


def test_restrict_head_keeps_the_rows_of_the_given_classes():
    torch.manual_seed(0)
    model = models.build_model("resnet18", 1000).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        models.restrict_head(model, [7, 3, 999])
        assert torch.allclose(model(x), full[:, [7, 3, 999]], atol=1e-5)
    squeeze = models.build_model("squeezenet1_1", 10)  # a 1x1 Conv2d head
    models.restrict_head(squeeze, [1, 0])
    assert squeeze.get_submodule(models.head_name(squeeze)).out_channels == 2
