"""qcore.nets.weights: the weights fallback chain (pretrained, checkpoint, baseline), safe checkpoint reading, and
how a model's weights decide the preparation of an ImageNet-class folder."""

from __future__ import annotations

import pickle
import urllib.error

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from qcore import data
from qcore.data import DatasetBundle, TensorImages
from qcore.nets import weights
from qcore.nets.weights import WeightsError

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


def test_safetensors_checkpoint_loads(tmp_path):
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "mine.safetensors"
    save_file(ref.state_dict(), str(path))
    loaded = weights.load_model("resnet18", _bundle(), str(path))
    assert loaded.weights == f"checkpoint:{path}" and not loaded.model.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), ref(x))


def test_pt_checkpoint_nested_and_prefixed(tmp_path):
    sd = torchvision.models.resnet18(num_classes=10).state_dict()
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    loaded = weights.load_model("resnet18", _bundle(), str(path))
    assert torch.equal(loaded.model.fc.weight, sd["fc.weight"])


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    proof, target = tmp_path / "proof.txt", tmp_path / "pwned.txt"
    pickle.loads(pickle.dumps(_Evil(proof)))  # the payload is real: plain unpickling writes the file
    assert proof.exists()
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(1), "payload": _Evil(target)}, path)
    refused = r"evil\.pt needs arbitrary code .*GLOBAL exec was not an allowed global by default\); qcore refused"
    with pytest.raises(WeightsError, match=refused):
        weights.load_model("resnet18", _bundle(), str(path))
    assert not target.exists()


def test_checkpoint_with_wrong_keys_lists_them(tmp_path):
    sd = torchvision.models.resnet18(num_classes=10).state_dict()
    del sd["fc.bias"]
    sd["extra.weight"] = torch.zeros(3)
    sd["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "wrong.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        weights.load_model("resnet18", _bundle(), str(path))
    msg = str(err.value)
    assert "missing keys (1): fc.bias" in msg and "unexpected keys (1): extra.weight" in msg
    assert "conv1.weight (64, 3, 3, 3) vs (64, 3, 7, 7)" in msg


def test_bad_weights_arguments(tmp_path):
    with pytest.raises(WeightsError, match="'auto', 'pretrained', 'baseline' or a checkpoint"):
        weights.load_model("resnet18", _bundle(), "weights.ckpt")
    with pytest.raises(WeightsError, match="does not exist"):
        weights.load_model("resnet18", _bundle(), str(tmp_path / "nope.safetensors"))
    with pytest.raises(WeightsError, match="not ImageNet classes"):
        weights.load_model("resnet18", _bundle(), "pretrained")


def test_pretrained_from_torch_home_cut_to_the_folder_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    full = torchvision.models.resnet18().eval()  # stands in for the cached ImageNet file
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(full.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    bundle = _bundle(["n01443537", "n01440764"], imagenet=[1, 0])
    loaded = weights.load_model("resnet18", bundle, "auto")
    assert loaded.weights == "pretrained:ResNet18_Weights.IMAGENET1K_V1"
    assert loaded.classes == ["goldfish", "tench"] and loaded.num_classes == 2
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), full(x)[:, [1, 0]], atol=1e-5)
    assert "ResNet18_Weights.IMAGENET1K_V1 was evaluated on 224-pixel crops; these images are 32 pixels" in \
        " ".join(loaded.notes)
    bundle.resize = 37  # as the weights want for 32-pixel crops (256 / 224 * 32, bilinear): no note
    assert not any("resized to" in n for n in weights.load_model("resnet18", bundle, "auto").notes)
    bundle.resize, bundle.interpolation = 40, "bicubic"
    assert any("resized to 256 (bilinear) and cropped to 224; these were resized to 40 (bicubic)" in n
               for n in weights.load_model("resnet18", bundle, "auto").notes)


def test_pretrained_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="could not get ResNet18_Weights.IMAGENET1K_V1.*hub/checkpoints"):
        weights.load_model("resnet18", _bundle(["n01440764", "n01443537"], imagenet=[0, 1]), "pretrained")


def test_pretrained_transform_follows_the_weights_evaluation_transform():
    assert weights.pretrained_transform("resnet18", 224) == (256, "bilinear")
    assert weights.pretrained_transform("resnet50", 224) == (232, "bilinear")  # IMAGENET1K_V2
    assert weights.pretrained_transform("efficientnet_b0", 224) == (256, "bicubic")
    assert weights.pretrained_transform("inception_v3", 299) == (342, "bilinear")
    assert weights.pretrained_transform("resnet18", 112) == (128, "bilinear")  # scaled with the crop


def test_load_model_trains_the_missing_baseline_then_reuses_it(colour_folder):
    bundle = data.load_dataset(colour_folder, image_size=16)
    calls = []
    loaded = weights.load_model("resnet18", bundle, "auto", progress=lambda *a: calls.append(a))
    assert loaded.weights.startswith("baseline:") and calls and loaded.classes == ["c0", "c1", "c2"]
    assert not loaded.model.training and loaded.input_size == 16
    assert any("trained one now" in n for n in loaded.notes)
    again = weights.load_model("resnet18", bundle, "baseline", progress=lambda *a: calls.append("again"))
    assert again.weights == loaded.weights and "again" not in calls
    x, _ = next(data.batches(bundle.test, 8))
    with torch.no_grad():
        assert torch.equal(again.model(x), loaded.model(x))


def test_imagenet_folders_are_prepared_as_the_models_weights_were_evaluated(tmp_path):
    import numpy as np
    from PIL import Image

    def folder(name, classes):
        for c in classes:
            (tmp_path / name / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((30, 40, 3), 40 * i, dtype=np.uint8)).save(tmp_path / name / c / f"{i}.png")
        return f"imagefolder:{tmp_path / name}"

    synsets, pets = folder("s", ("n01440764", "n01443537")), folder("p", ("cat", "dog"))
    effnet = weights.load_dataset_for("efficientnet_b0", synsets, 64)
    assert (effnet.resize, effnet.interpolation) == (73, "bicubic")  # 256 -> 224, bicubic, scaled to 64
    resnet50 = weights.load_dataset_for("resnet50", synsets, 64)
    assert (resnet50.resize, resnet50.interpolation) == (66, "bilinear")  # 232 -> 224, scaled to 64
    other = weights.load_dataset_for("efficientnet_b0", pets, 64)
    assert (other.resize, other.interpolation) == (73, "bilinear")  # not ImageNet classes: the default
