"""qcore.train and the CLI: recipes and their keys, short real trainings, cancellation, caching."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from qcore import cli_data, data, models, train
from qcore.train import Cancelled, Recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(model="resnet18", **changes) -> Recipe:
    """Real Fashion-MNIST, but a few steps on a small subset: a test, not a baseline."""
    base = train.recipe_for(model, "fashion-mnist")
    return dataclasses.replace(base, train_limit=128, eval_limit=64, max_steps=2, batch_size=32, **changes)


@pytest.fixture
def folder(tmp_path):
    """Three classes of 12 generated 24x24 images; a class is a colour, so a few steps learn it."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(220, 30, 30), (30, 220, 30), (30, 30, 220)]):
        (tmp_path / "f" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            img = np.clip(np.array(colour) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "f" / f"c{c}" / f"{i}.png")
    return f"imagefolder:{tmp_path / 'f'}"


def test_recipe_key_is_stable_and_changes_with_every_field():
    r = train.recipe_for("resnet18", "fashion-mnist")
    assert r.key() == train.recipe_for("resnet18", "fashion-mnist").key() and len(r.key()) == 12
    changed = {"epochs": 7.0, "lr": 0.01, "seed": 1, "image_size": 28, "batch_size": 96, "augment": "flip",
               "model": "resnet34", "dataset": "cifar10", "bn_momentum": 0.2, "weight_decay": 0.0}
    keys = {dataclasses.replace(r, **{k: v}).key() for k, v in changed.items()}
    assert len(keys) == len(changed) and r.key() not in keys
    assert train.recipe_for("resnet18", "fashion-mnist", epochs=3).key() == \
        train.recipe_for("resnet18", "fashion-mnist", epochs=3.0).key()


def test_recipes_per_family():
    rn = train.recipe_for("resnet50", "cifar10")
    assert (rn.optimizer, rn.batch_size, rn.channels_last) == ("adamw", 128, True)
    mb = train.recipe_for("mobilenet_v3_small", "fashion-mnist")
    assert mb.optimizer == "adamw" and mb.bn_momentum == 0.1 and mb.channels_last
    assert train.recipe_for("vit_b_16", "fashion-mnist").label_smoothing == 0.1
    assert train.recipe_for("resnet18", "fashion-mnist", epochs=3).epochs == 3
    assert train.recipe_for("resnet18", "imagefolder:/x").image_size == 224
    with pytest.raises(ValueError, match="Recipe.optimizer must be one of .'sgd', 'adamw'., not 'rmsprop'"):
        dataclasses.replace(mb, optimizer="rmsprop")
    with pytest.raises(ValueError, match="Recipe.epochs must be a positive number"):
        dataclasses.replace(mb, epochs=0)


def test_baseline_path_names_model_dataset_and_recipe(_isolated_home):
    r = train.recipe_for("resnet18", "fashion-mnist")
    p = train.baseline_path("resnet18", "fashion-mnist", r)
    assert p.parent == _isolated_home / "baselines"
    assert p.name == f"resnet18__fashion-mnist__{r.key()}.safetensors"
    pets = "imagefolder:/data/my pets"
    q = train.baseline_path("resnet18", pets, dataclasses.replace(r, dataset=pets))
    assert q.name.startswith("resnet18__imagefolder-my-pets-")
    with pytest.raises(ValueError, match="recipe is for resnet18"):
        train.baseline_path("resnet34", "fashion-mnist", r)


def test_train_a_few_steps_on_real_fashion_mnist(fashion_mnist):
    calls = []
    recipe = _tiny()
    path = train.train_baseline("resnet18", "fashion-mnist", recipe=recipe,
                                progress=lambda d, t, m: calls.append((d, t, m)))
    meta = train.baseline_meta(path)
    assert meta["steps"] == 2 and meta["train_images"] == 128 and meta["test_images"] == 64
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and meta["recipe_key"] == recipe.key()
    assert meta["classes"] == data.FASHION_CLASSES and meta["torch"] == torch.__version__
    assert meta["seed"] == 0 and meta["recipe"]["max_steps"] == 2 and meta["train_seconds"] > 0
    assert json.loads(path.with_suffix(".json").read_text()) == meta
    assert [d for d, _, _ in calls] == list(range(1, len(calls) + 1)) and calls[-1][0] == calls[-1][1]
    assert "ETA" in calls[0][2] and "loss" in calls[0][2]
    assert train.find_baseline("resnet18", "fashion-mnist", recipe) == path
    # cached: the second call trains nothing
    again = []
    cached = train.train_baseline("resnet18", "fashion-mnist", recipe=recipe,
                                  progress=lambda *a: again.append(a))
    assert cached == path and again == []
    # deterministic for a seed: training again gives the same weights
    first = load_file(str(path))
    train.train_baseline("resnet18", "fashion-mnist", recipe=recipe, force=True)
    second = load_file(str(path))
    assert all(torch.equal(first[k], second[k]) for k in first)
    # a changed recipe is a different baseline
    assert train.find_baseline("resnet18", "fashion-mnist", dataclasses.replace(recipe, lr=0.05)) is None


def test_mobilenet_trains_with_settled_batchnorm(fashion_mnist):
    path = train.train_baseline("mobilenet_v3_small", "fashion-mnist", recipe=_tiny("mobilenet_v3_small"))
    state = load_file(str(path))
    assert train.baseline_meta(path)["recipe"]["bn_momentum"] == 0.1
    assert any(k.endswith("running_mean") and state[k].abs().sum() > 0 for k in state)


def test_cancel_saves_nothing(fashion_mnist):
    recipe = _tiny()
    with pytest.raises(Cancelled):
        train.train_baseline("resnet18", "fashion-mnist", recipe=recipe, cancel=lambda: True)
    assert train.find_baseline("resnet18", "fashion-mnist", recipe) is None
    assert not train.baseline_path("resnet18", "fashion-mnist", recipe).exists()


def test_load_model_trains_the_missing_baseline_then_reuses_it(folder):
    bundle = data.load_dataset(folder, image_size=16)
    calls = []
    loaded = models.load_model("resnet18", bundle, "auto", progress=lambda *a: calls.append(a))
    assert loaded.weights.startswith("baseline:") and calls and loaded.classes == ["c0", "c1", "c2"]
    assert not loaded.model.training and loaded.input_size == 16
    assert any("trained one now" in n for n in loaded.notes)
    again = models.load_model("resnet18", bundle, "baseline", progress=lambda *a: calls.append("again"))
    assert again.weights == loaded.weights and "again" not in calls
    x, _ = next(data.batches(bundle.test, 8))
    with torch.no_grad():
        assert torch.equal(again.model(x), loaded.model(x))


def _cli(*argv) -> int:
    parser = argparse.ArgumentParser(prog="qcore")
    cli_data.add_subcommands(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_train_models_datasets(folder, capsys):
    assert _cli("train", "--model", "mobilenet_v3_small", "--dataset", folder, "--epochs", "1",
                "--image-size", "32") == 0
    out = capsys.readouterr()
    assert "trained: " in out.out and "test accuracy" in out.out and "%" in out.err
    assert _cli("train", "--model", "mobilenet_v3_small", "--dataset", folder, "--epochs", "1",
                "--image-size", "32") == 0
    assert "cached: " in capsys.readouterr().out
    assert _cli("train", "--model", "resnet19", "--dataset", folder) == 2
    assert "unknown model 'resnet19'" in capsys.readouterr().err
    assert _cli("train", "--model", "inception_v3", "--dataset", folder, "--image-size", "32") == 2
    assert _cli("models", "--filter", "resnet18") == 0
    assert "11.7M" in capsys.readouterr().out
    assert _cli("datasets") == 0
    assert "fashion-mnist" in capsys.readouterr().out


def test_cli_fetch_offline_says_how(monkeypatch, capsys):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    assert _cli("fetch-data", "fashion-mnist") == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err

