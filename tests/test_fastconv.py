"""qcore.nets.fastconv: convolutions over tiny maps as dense matrix products, exact in value and gradient."""

import pytest
import torch
import torchvision
from torch import nn

from qcore.nets import fastconv
from qcore.nets.fastconv import tiny_map_convs, tiny_map_output


@pytest.mark.parametrize(("conv", "size", "out"), [
    (nn.Conv2d(8, 4, 3, padding=1), 1, (1, 1)),             # ResNet's layer4 at 32x32 input
    (nn.Conv2d(8, 4, 3, stride=2, padding=1), 2, (1, 1)),   # its stride-2 entry: 2x2 -> 1x1
    (nn.Conv2d(8, 4, 3, padding=1), 2, (2, 2)),             # layer3 at 32x32 input
    (nn.Conv2d(8, 4, 3, padding=1), 3, (3, 3)),
    (nn.Conv2d(8, 4, 3), 3, (1, 1)),                         # valid 3x3 on a 3x3 map
    (nn.Conv2d(8, 4, 1), 1, (1, 1)),                         # pointwise on a 1x1 map
    (nn.Conv2d(8, 4, 3, padding=1), 4, None),                # 16 pixels > 9 taps: oneDNN's path
    (nn.Conv2d(8, 4, 1, stride=2), 2, None),                 # 4 pixels > 1 tap
    (nn.Conv2d(8, 8, 3, padding=1, groups=8), 1, None),      # depthwise
    (nn.Conv2d(8, 4, 3, padding=2, dilation=2), 1, None),
    (nn.Conv2d(8, 4, 3, padding="same"), 1, None),
    (nn.Conv2d(8, 4, 3, padding=1, padding_mode="reflect"), 1, None),
])
def test_dense_path_only_for_tiny_maps(conv, size, out):
    assert tiny_map_output(conv, size, size) == out


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("stride", "padding", "hw", "bias"), [
    (1, 1, (1, 1), False), (2, 1, (2, 2), True), (1, 0, (3, 3), True), (1, 1, (2, 2), True),
    (1, 1, (3, 3), False), (1, 1, (1, 3), True), (2, 1, (3, 3), False)])
def test_matches_convolution_in_value_and_gradients(channels_last, stride, padding, hw, bias):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ref = nn.Conv2d(16, 24, 3, stride=stride, padding=padding, bias=bias).to(memory_format=fmt)
    fast = nn.Conv2d(16, 24, 3, stride=stride, padding=padding, bias=bias).to(memory_format=fmt)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(5, 16, *hw).contiguous(memory_format=fmt)
    x_ref, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref = ref(x_ref)
    with tiny_map_convs(fast) as patched:
        assert patched == 1
        assert tiny_map_output(fast, *hw) is not None
        y_fast = fast(x_fast)
    assert y_fast.shape == y_ref.shape
    torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    grad_out = torch.randn(y_ref.shape)
    y_ref.backward(grad_out)
    y_fast.backward(grad_out)
    torch.testing.assert_close(x_fast.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, atol=1e-5, rtol=1e-5)
    assert fast.weight.grad.stride() == fast.weight.stride()  # the optimizer sees the weight's layout
    if hw == (1, 1):  # taps that only met padding get exactly zero
        outside = torch.ones(3, 3, dtype=torch.bool)
        outside[1, 1] = False
        assert fast.weight.grad[:, :, outside].abs().max() == 0
    if bias:
        torch.testing.assert_close(fast.bias.grad, ref.bias.grad)


def test_resnet18_at_32px_takes_the_dense_path_and_is_restored(monkeypatch):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    calls = []

    def recording(conv, h, w):
        out = tiny_map_output(conv, h, w)
        if out is not None:
            calls.append((tuple(conv.weight.shape), (h, w), out))
        return out

    monkeypatch.setattr(fastconv, "tiny_map_output", recording)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        with tiny_map_convs(model) as patched:
            fast = model(x)
    assert patched == sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 20
    # layer3's 3x3 convs on 2x2 maps, layer4's stride-2 entry (2x2 -> 1x1) and its 3x3 convs on 1x1 maps
    assert calls == [((256, 256, 3, 3), (2, 2), (2, 2))] * 3 + [((512, 256, 3, 3), (2, 2), (1, 1))] + [
        ((512, 512, 3, 3), (1, 1), (1, 1))] * 3
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)
    assert not any("forward" in vars(m) for m in model.modules())
    calls.clear()
    with torch.no_grad():
        model(x)
    assert calls == []
