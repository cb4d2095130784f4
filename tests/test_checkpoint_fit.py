"""qcore.nets.checkpoint_fit: a checkpoint against a model, from names and shapes (the model on the meta device)."""

from __future__ import annotations

import torchvision

from qcore.nets.checkpoint_fit import fit_problem


def _shapes(**kw) -> dict:
    return {k: list(v.shape) for k, v in torchvision.models.mobilenet_v3_small(**kw).state_dict().items()}


def test_a_matching_state_fits_and_a_different_head_is_named():
    ten = _shapes(num_classes=10)
    assert fit_problem("mobilenet_v3_small", ten, 10, 32) is None
    problem = fit_problem("mobilenet_v3_small", ten, 4, 32, name="mine.pt")
    assert problem == ("mine.pt does not fit mobilenet_v3_small: shape mismatches (checkpoint vs model) (2): "
                       "classifier.3.bias (10,) vs (4,), classifier.3.weight (10, 1024) vs (4, 1024); its head has "
                       "10 outputs and the dataset 4 classes")


def test_an_imagenet_head_fits_imagenet_classes_only():
    imagenet = _shapes()  # 1000 outputs
    assert fit_problem("mobilenet_v3_small", imagenet, 3, 64, imagenet_classes=True) is None
    assert "classifier.3.weight (1000, 1024) vs (3, 1024)" in fit_problem("mobilenet_v3_small", imagenet, 3, 64)


def test_another_model_lists_what_is_missing_and_unexpected():
    problem = fit_problem("resnet18", _shapes(num_classes=10), 10, 32)
    assert problem.startswith("the checkpoint does not fit resnet18: missing keys (122): bn1.bias")
    assert "unexpected keys (" in problem and "classifier.0.bias" in problem
