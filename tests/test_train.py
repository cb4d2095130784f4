"""qcore.nets.train and the CLI: recipes and their keys, short real trainings, cancellation, caching."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from qcore import data
from qcore.nets import train
from qcore.nets.train import Cancelled, Recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(model="resnet18", **changes) -> Recipe:
    """Real Fashion-MNIST, but a few steps on a small subset: a test, not a baseline."""
    base = train.recipe_for(model, "fashion-mnist")
    return dataclasses.replace(base, train_limit=128, eval_limit=64, max_steps=2, batch_size=32, **changes)


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


@pytest.fixture(scope="module")
def fashion32():
    return data.load_dataset("fashion-mnist", 32)


def test_train_a_few_steps_on_real_fashion_mnist(fashion_mnist, fashion32):
    calls = []
    recipe = _tiny()
    path = train.train_baseline("resnet18", fashion32, recipe=recipe,
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
    cached = train.train_baseline("resnet18", fashion32, recipe=recipe,
                                  progress=lambda *a: again.append(a))
    assert cached == path and again == []
    # deterministic for a seed: training again gives the same weights
    first = load_file(str(path))
    train.train_baseline("resnet18", fashion32, recipe=recipe, force=True)
    second = load_file(str(path))
    assert all(torch.equal(first[k], second[k]) for k in first)
    # a changed recipe is a different baseline
    assert train.find_baseline("resnet18", "fashion-mnist", dataclasses.replace(recipe, lr=0.05)) is None


def test_mobilenet_trains_with_settled_batchnorm(fashion_mnist, fashion32):
    path = train.train_baseline("mobilenet_v3_small", fashion32, recipe=_tiny("mobilenet_v3_small"))
    state = load_file(str(path))
    assert train.baseline_meta(path)["recipe"]["bn_momentum"] == 0.1
    assert any(k.endswith("running_mean") and state[k].abs().sum() > 0 for k in state)


def test_cancel_saves_nothing(fashion_mnist, fashion32):
    recipe = _tiny()
    with pytest.raises(Cancelled):
        train.train_baseline("resnet18", fashion32, recipe=recipe, cancel=lambda: True)
    assert train.find_baseline("resnet18", "fashion-mnist", recipe) is None
    assert not train.baseline_path("resnet18", "fashion-mnist", recipe).exists()


def test_the_dataset_trained_on_must_be_the_recipes(fashion_mnist, fashion32):
    with pytest.raises(ValueError, match="recipe is for fashion-mnist at 28 px, the dataset given is .* at 32"):
        train.train_baseline("resnet18", fashion32, recipe=dataclasses.replace(_tiny(), image_size=28))


# -- the shipped baseline, and one trainer per baseline ------------------------------------------------------------


def test_the_shipped_baseline_is_found_and_scores_its_recorded_top1(fashion_mnist):
    """The offline default's baseline ships with qcore (qcore/shipped), is loaded like a cached one (safetensors,
    classes checked, no training), and scores what its record says on all 10,000 test images at 32 px."""
    from qcore.nets import weights
    from qcore.runs.sweep import SweepConfig

    model = SweepConfig().model
    recipe = train.recipe_for(model, "fashion-mnist")
    path = train.find_baseline(model, "fashion-mnist")
    assert path == train.SHIPPED / f"{model}__fashion-mnist__{recipe.key()}.safetensors"
    meta = train.baseline_meta(path)
    assert (meta["recipe_key"], meta["test_images"], meta["test_accuracy"]) == (recipe.key(), 10_000, 0.8887)
    bundle = weights.load_dataset_for(model, "fashion-mnist")
    loaded = weights.load_model(model, bundle, "auto", progress=lambda *a: pytest.fail(f"it trained: {a}"))
    assert loaded.weights == f"baseline:{path}" and loaded.classes == meta["classes"]
    # the FP32 row's note says where it came from (Home calls it shipped; the note said "trained by qcore ... 3149 s")
    assert any(n.startswith("baseline shipped with qcore") for n in loaded.notes), loaded.notes
    assert not any("3149" in n or "on this machine:" in n for n in loaded.notes), loaded.notes
    top1 = train.evaluate(loaded.model, bundle.test)
    assert len(bundle.test) == 10_000 and top1 * 100 == pytest.approx(meta["test_accuracy"] * 100, abs=0.01)


def test_a_baseline_in_the_data_home_comes_before_the_shipped_one(_isolated_home):
    recipe = train.recipe_for("mobilenet_v3_small", "fashion-mnist")
    mine = train.baseline_path("mobilenet_v3_small", "fashion-mnist", recipe)
    assert train.find_baseline("mobilenet_v3_small", "fashion-mnist") == train.SHIPPED / mine.name
    mine.write_bytes(b"")
    assert train.find_baseline("mobilenet_v3_small", "fashion-mnist").parent == train.SHIPPED  # no record: not one
    mine.with_suffix(".json").write_text("{}")  # a record, but an empty file: damaged, passed over (and moved aside)
    assert train.find_baseline("mobilenet_v3_small", "fashion-mnist").parent == train.SHIPPED
    shipped = train.SHIPPED / mine.name  # a whole one of the user's own comes first
    mine.write_bytes(shipped.read_bytes())
    mine.with_suffix(".json").write_bytes(shipped.with_suffix(".json").read_bytes())
    assert train.find_baseline("mobilenet_v3_small", "fashion-mnist") == mine


FIRST_TRAINER = """
import json, sys, time
from qcore import data
from qcore.nets import train
recipe = train.Recipe(**json.loads(sys.argv[1]))
path = train.train_baseline("resnet18", data.load_dataset("fashion-mnist", 32), recipe=recipe,
                            progress=lambda done, total, message: time.sleep(1.5))  # slow enough to be caught at it
print(path)
"""


def test_a_second_trainer_waits_for_the_first_and_loads_its_baseline(fashion_mnist, fashion32):
    """Two processes want the same baseline: the second (this one) waits for the first's lock, says so, and
    then returns the file the first saved instead of training it again."""
    import subprocess
    import sys
    import time

    recipe = _tiny()
    first = subprocess.Popen([sys.executable, "-c", FIRST_TRAINER, json.dumps(dataclasses.asdict(recipe))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not train.training_elsewhere("resnet18", "fashion-mnist", recipe):
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the first trainer never took the lock"
            time.sleep(0.1)
        messages = []
        path = train.train_baseline("resnet18", fashion32, recipe=recipe, progress=lambda d, t, m: messages.append(m))
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-2000:]
    assert path == train.baseline_path("resnet18", "fashion-mnist", recipe) and out.strip() == str(path)
    assert messages and all(m.startswith(train.WAITING) for m in messages), messages  # waited, trained nothing
    assert not train.training_elsewhere("resnet18", "fashion-mnist", recipe)
