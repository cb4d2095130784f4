"""qcore.backends.graph_names: exported node names back to torchvision module names, and a clear refusal."""

import pytest

from qcore.backends.graph_names import join_scopes, layer_nodes, nodes_for, onnx_module, openvino_module
from qcore.quant.spec import SpecError


@pytest.mark.parametrize("node, module", [
    ("/layer1/layer1.0/conv2/Conv", "layer1.0.conv2"),
    ("/layer4/layer4.0/downsample/downsample.0/Conv", "layer4.0.downsample.0"),
    ("/features/features.1/block/block.0/block.0.0/Conv", "features.1.block.0.0"),
    ("/features/features.1/block/block.1/fc1/Conv", "features.1.block.1.fc1"),
    ("/classifier/classifier.3/Gemm", "classifier.3"),
    ("/fc/Gemm", "fc"),
    ("Identity_0", None),
    ("/Flatten", None),
])  # fmt: skip
def test_onnx_scope_names_join_into_module_names(node, module):
    assert onnx_module(node) == module


def test_openvino_names_and_the_nodes_of_kept_layers():
    assert openvino_module("__module.features.0.0/aten::_convolution/Convolution") == "features.0.0"
    assert openvino_module("Multiply_11379") is None and join_scopes([]) == ""
    nodes = [("/conv1/Conv", "Conv"), ("/relu/Relu", "Relu"), ("/fc/MatMul", "MatMul"), ("/fc/Add", "Add")]
    by_module = layer_nodes(nodes, onnx_module, ("Conv", "MatMul", "Add"))
    assert by_module == {"conv1": ["/conv1/Conv"], "fc": ["/fc/MatMul", "/fc/Add"]}
    assert nodes_for(("fc",), by_module, "ONNX") == ["/fc/MatMul", "/fc/Add"]
    with pytest.raises(SpecError, match=r"no node of the ONNX graph is layer 'conv2'.*names: conv1 \(2 in all\)"):
        nodes_for(("conv2",), by_module, "ONNX")
