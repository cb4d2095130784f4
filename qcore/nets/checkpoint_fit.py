"""Whether a checkpoint's tensors fit a model, from names and shapes only (the model is built on the meta
device: no memory, no computation), so that the app can say so before Run instead of failing after it.

The rule is the one :func:`qcore.nets.weights.load_model` applies (:func:`qcore.nets.weights.fit_mismatches`): every
key of the model's state dict present with its shape, nothing more; a 1000-row head (an ImageNet classifier)
fits a dataset of ImageNet classes, whose rows are then picked out.
"""

from __future__ import annotations

__all__ = ["fit_problem"]


def fit_problem(model: str, shapes: dict[str, list[int]], num_classes: int, image_size: int,
                imagenet_classes: bool = False, name: str = "the checkpoint") -> str | None:
    """Why ``shapes`` (tensor name: shape) cannot load into ``model`` with ``num_classes`` outputs, or None."""
    import torch

    from qcore.nets import models
    from qcore.nets.weights import fit_mismatches

    with torch.device("meta"):
        try:
            built = models.build_model(model, num_classes, image_size)
        except (ValueError, RuntimeError, TypeError):  # an input-size problem is reported on its own
            return None
    prefix = models.head_name(built)
    head = f"{prefix}.weight"
    rows = shapes.get(head, [0])[0]
    if imagenet_classes and rows == 1000 != num_classes:
        with torch.device("meta"):
            built = models.build_model(model, 1000, image_size)
    expected = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    parts = fit_mismatches(expected, shapes)
    if not parts:
        return None
    wrong = [k for k in sorted(set(expected) & set(shapes)) if tuple(shapes[k]) != expected[k]]
    hint = ""
    if wrong and rows != num_classes and all(k.startswith(f"{prefix}.") for k in wrong):
        hint = f"; its head has {rows} outputs and the dataset {num_classes} classes"
    return f"{name} does not fit {model}: " + "; ".join(parts) + hint
