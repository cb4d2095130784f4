"""qcore.models: registry, head adaptation, input sizes and the weights fallback chain."""

from __future__ import annotations

import pickle
import urllib.error

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from qcore import models
from qcore.data import DatasetBundle, TensorImages
from qcore.models import ModelInputError, WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


def _bundle(classes=None, imagenet=None, size=32) -> DatasetBundle:
    classes = classes or [str(i) for i in range(10)]
    g = torch.Generator().manual_seed(0)
    ds = TensorImages(torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=g),
                      torch.arange(8) % len(classes), size, (0.5,) * 3, (0.25,) * 3)
    return DatasetBundle("synthetic", classes, ds, ds, size, (0.5,) * 3, (0.25,) * 3, "memory",
                         imagenet_indices=imagenet)


class _Evil:
    """Unpickling this runs exec(), which writes a file: what a malicious checkpoint does."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return exec, (f"open({self.target!r}, 'w').write('pwned')",)


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


def test_safetensors_checkpoint_loads(tmp_path):
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "mine.safetensors"
    save_file(ref.state_dict(), str(path))
    loaded = models.load_model("resnet18", _bundle(), str(path))
    assert loaded.weights == f"checkpoint:{path}" and not loaded.model.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), ref(x))


def test_pt_checkpoint_nested_and_prefixed(tmp_path):
    sd = torchvision.models.resnet18(num_classes=10).state_dict()
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    loaded = models.load_model("resnet18", _bundle(), str(path))
    assert torch.equal(loaded.model.fc.weight, sd["fc.weight"])


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    proof, target = tmp_path / "proof.txt", tmp_path / "pwned.txt"
    pickle.loads(pickle.dumps(_Evil(proof)))  # the payload is real: plain unpickling writes the file
    assert proof.exists()
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(1), "payload": _Evil(target)}, path)
    refused = r"evil\.pt needs arbitrary code .*GLOBAL exec was not an allowed global by default\); qcore refused"
    with pytest.raises(WeightsError, match=refused):
        models.load_model("resnet18", _bundle(), str(path))
    assert not target.exists()


def test_checkpoint_with_wrong_keys_lists_them(tmp_path):
    sd = torchvision.models.resnet18(num_classes=10).state_dict()
    del sd["fc.bias"]
    sd["extra.weight"] = torch.zeros(3)
    sd["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "wrong.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        models.load_model("resnet18", _bundle(), str(path))
    msg = str(err.value)
    assert "missing keys (1): fc.bias" in msg and "unexpected keys (1): extra.weight" in msg
    assert "conv1.weight (64, 3, 3, 3) vs (64, 3, 7, 7)" in msg


def test_bad_weights_arguments(tmp_path):
    with pytest.raises(WeightsError, match="'auto', 'pretrained', 'baseline' or a checkpoint"):
        models.load_model("resnet18", _bundle(), "weights.ckpt")
    with pytest.raises(WeightsError, match="does not exist"):
        models.load_model("resnet18", _bundle(), str(tmp_path / "nope.safetensors"))
    with pytest.raises(WeightsError, match="not ImageNet classes"):
        models.load_model("resnet18", _bundle(), "pretrained")


def test_pretrained_from_torch_home_cut_to_the_folder_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    full = torchvision.models.resnet18().eval()  # stands in for the cached ImageNet file
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(full.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    bundle = _bundle(["n01443537", "n01440764"], imagenet=[1, 0])
    loaded = models.load_model("resnet18", bundle, "auto")
    assert loaded.weights == "pretrained:ResNet18_Weights.IMAGENET1K_V1"
    assert loaded.classes == ["goldfish", "tench"] and loaded.num_classes == 2
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), full(x)[:, [1, 0]], atol=1e-5)
    assert "ResNet18_Weights.IMAGENET1K_V1 was evaluated on 224-pixel crops; these images are 32 pixels" in \
        " ".join(loaded.notes)
    bundle.resize = 37  # as the weights want for 32-pixel crops (256 / 224 * 32, bilinear): no note
    assert not any("resized to" in n for n in models.load_model("resnet18", bundle, "auto").notes)
    bundle.resize, bundle.interpolation = 40, "bicubic"
    assert any("resized to 256 (bilinear) and cropped to 224; these were resized to 40 (bicubic)" in n
               for n in models.load_model("resnet18", bundle, "auto").notes)


def test_pretrained_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="could not get ResNet18_Weights.IMAGENET1K_V1.*hub/checkpoints"):
        models.load_model("resnet18", _bundle(["n01440764", "n01443537"], imagenet=[0, 1]), "pretrained")


def test_pretrained_transform_follows_the_weights_evaluation_transform():
    assert models.pretrained_transform("resnet18", 224) == (256, "bilinear")
    assert models.pretrained_transform("resnet50", 224) == (232, "bilinear")  # IMAGENET1K_V2
    assert models.pretrained_transform("efficientnet_b0", 224) == (256, "bicubic")
    assert models.pretrained_transform("inception_v3", 299) == (342, "bilinear")
    assert models.pretrained_transform("resnet18", 112) == (128, "bilinear")  # scaled with the crop
