"""Export an FP32 torch model to ONNX with dynamic batch *and* spatial dimensions.

One exported model serves both accuracy at the dataset's size (32x32 for Fashion-MNIST)
and latency at 224x224. The TorchScript exporter (``dynamo=False``) is used while torch
still has it: for torchvision CNNs it folds BatchNorm into the convolutions and writes a
plain graph that ONNX Runtime's quantizer handles well; otherwise the torch.export-based
exporter (onnxscript) runs with the same dynamic dimensions.

Nothing here imports onnx or onnxruntime at module import time.
"""

from __future__ import annotations

import copy
import io
import os
import tempfile
import warnings
from collections import Counter

import torch
from torch import nn

__all__ = ["INPUT_NAME", "export_onnx", "op_counts"]

INPUT_NAME = "input"
_OUTPUT_NAME = "logits"
_OPSET = 17


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """The serialized ONNX model of ``model`` (eval, CPU), input ``input`` of shape [N, C, H, W] with N, H, W free."""
    model = copy.deepcopy(model).eval().cpu().float()
    example = example.detach().cpu().float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        try:
            return _export_torchscript(model, example)
        except (TypeError, RuntimeError, AttributeError) as exc:  # pragma: no cover - torch without dynamo=False
            legacy_error = exc
        try:
            return _export_dynamo(model, example)
        except Exception as exc:  # pragma: no cover
            msg = f"ONNX export failed: TorchScript exporter: {legacy_error}; dynamo exporter: {exc}"
            raise RuntimeError(msg) from exc


def _export_torchscript(model: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, _OUTPUT_NAME: {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[_OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=_OPSET,
            do_constant_folding=True,
        )
    return buf.getvalue()


def _export_dynamo(model: nn.Module, example: torch.Tensor) -> bytes:  # pragma: no cover - fallback
    batch, height, width = torch.export.Dim("batch"), torch.export.Dim("height"), torch.export.Dim("width")
    ex2 = example if example.shape[0] > 1 else torch.cat([example, example])
    with torch.no_grad():
        prog = torch.onnx.export(
            model,
            (ex2,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[_OUTPUT_NAME],
            dynamic_shapes=({0: batch, 2: height, 3: width},),
            opset_version=max(_OPSET, 18),
            external_data=False,
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        prog.save(path, external_data=False)
        with open(path, "rb") as fh:
            return fh.read()


def op_counts(model_bytes: bytes) -> Counter:
    """How many nodes of each op type the ONNX model holds (``QuantizeLinear``, ``Conv`` ...)."""
    import onnx

    return Counter(node.op_type for node in onnx.load_from_string(model_bytes).graph.node)
