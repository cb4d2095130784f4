"""Shared fixtures. Every test runs with QCORE_HOME in a temporary folder, so the user's
run database, baselines and uploads are never touched."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="session")
def shared_builds(tmp_path_factory):
    return tmp_path_factory.mktemp("qcore-builds")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch, shared_builds):
    home = tmp_path_factory.mktemp("qcore-home")
    monkeypatch.setenv("QCORE_HOME", str(home))
    monkeypatch.delenv("QCORE_DB", raising=False)
    # Compiled builds (AOTInductor packages, ExecuTorch programs) depend only on their key, so the session's
    # tests share them: the same model at the same shape is compiled once per run of the suite. A test about
    # the cache itself points QCORE_BUILDS at a folder of its own.
    monkeypatch.setenv("QCORE_BUILDS", str(shared_builds))
    # auto's first-use probe (qcore.runs.auto_probe) would build and time every INT8 backend in each test's fresh
    # home: off here, as an operator can turn it off; tests/test_auto_probe.py turns it on.
    monkeypatch.setenv("QCORE_AUTO_PROBE", "off")
    return home


@pytest.fixture(scope="session")
def mobilenet_checkpoint(tmp_path_factory):
    """A random-init mobilenet_v3_small with a 10-class head, saved as a plain state dict (no training)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "mobilenet_v3_small-random.pt"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def resnet18_checkpoint(tmp_path_factory):
    """A random-init resnet18 with a 10-class head, saved as a plain state dict (no training)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18-random.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def fashion_mnist():
    from qcore.data import find_fashion_mnist

    folder = find_fashion_mnist()
    if folder is None:
        pytest.skip("Fashion-MNIST not found (apt-get install dataset-fashion-mnist, or set QCORE_DATA)")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's small models: on busy shared cores two mostly wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def colour_folder(tmp_path):
    """``imagefolder:`` name of three classes of 12 generated 24x24 images; a class is a colour, so a few
    training steps learn it."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in enumerate([(220, 30, 30), (30, 220, 30), (30, 30, 220)]):
        (tmp_path / "f" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            img = np.clip(np.array(colour) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "f" / f"c{c}" / f"{i}.png")
    return f"imagefolder:{tmp_path / 'f'}"
