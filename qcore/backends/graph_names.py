"""Which node of an exported graph is which torchvision layer: what ONNX Runtime's ``nodes_to_exclude`` and
NNCF's ``ignored_scope`` need to keep ``QuantSpec.keep_float`` layers in FP32.

Both exporters name a layer's nodes after the module scope they were traced in:

- ONNX (TorchScript exporter): ``/layer1/layer1.0/conv2/Conv``, ``/features/features.1/block/block.0/block.0.0/Conv``.
  The scopes are each module's name as its parent's ``named_modules`` sees it, so a Sequential's child repeats
  its parent's last name: joining ``features``, ``features.1``, ``block``, ``block.0``, ``block.0.0`` gives
  ``features.1.block.0.0`` (:func:`join_scopes`).
- OpenVINO (``convert_model`` of a traced module): ``__module.layer1.0.conv2/aten::_convolution/Convolution``,
  ``__module.fc/aten::linear/MatMul``: the full name follows ``__module.``. A convolution whose BatchNorm
  OpenVINO folds while converting loses its name (``Multiply_11379``), so the backend folds BatchNorms in
  torch first (:func:`qcore.backends.weight_only.fold_batchnorm`), which keeps the convolution's name.

A kept layer whose name no node carries is refused (:func:`nodes_for`), never quantized quietly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from qcore.quant.spec import SpecError

__all__ = ["join_scopes", "onnx_module", "openvino_module", "layer_nodes", "nodes_for"]


def join_scopes(scopes: list[str]) -> str:
    """The module's full name from the ONNX exporter's scope names.

    >>> join_scopes(["features", "features.1", "block", "block.0", "block.0.0"])
    'features.1.block.0.0'
    >>> join_scopes(["layer1", "layer1.0", "conv2"])
    'layer1.0.conv2'
    """
    path, last = "", ""
    for scope in scopes:
        if last and scope.startswith(last + "."):
            path += scope[len(last):]  # a Sequential's child: "block" then "block.0" adds ".0"
        else:
            path = f"{path}.{scope}" if path else scope
        last = scope
    return path


def onnx_module(node_name: str) -> str | None:
    """``/layer1/layer1.0/conv2/Conv`` -> ``layer1.0.conv2``; None for a node outside any module scope."""
    parts = node_name.split("/")
    if len(parts) < 3 or parts[0]:
        return None
    return join_scopes(parts[1:-1]) or None


def openvino_module(op_name: str) -> str | None:
    """``__module.layer1.0.conv2/aten::_convolution/Convolution`` -> ``layer1.0.conv2``; None otherwise."""
    prefix = "__module."
    if not op_name.startswith(prefix) or "/" not in op_name:
        return None
    return op_name[len(prefix):].split("/", 1)[0] or None


def layer_nodes(nodes: Iterable[tuple[str, str]], module_of, op_types: tuple[str, ...]) -> dict[str, list[str]]:
    """Module name -> the names of its nodes of ``op_types``, from ``(node name, op type)`` pairs in graph order."""
    out: dict[str, list[str]] = {}
    for name, op_type in nodes:
        module = module_of(name) if op_type in op_types else None
        if module:
            out.setdefault(module, []).append(name)
    return out


def nodes_for(keep: tuple[str, ...], by_module: dict[str, list[str]], engine: str) -> list[str]:
    """The node names of every layer in ``keep``; raises SpecError naming a layer that maps to no node of the
    exported graph (with the graph's nearest layer names)."""
    out = []
    for name in keep:
        if name not in by_module:
            known = sorted(by_module)
            near = difflib.get_close_matches(name, known, n=5, cutoff=0.5) or known[:5]
            raise SpecError(f"keep_float: no node of the {engine} graph is layer {name!r}, so it cannot be left in "
                            f"FP32 there; layers the graph names: {', '.join(near)} ({len(known)} in all)")
        out += by_module[name]
    return out
