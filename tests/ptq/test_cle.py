"""Cross-layer equalization and BatchNorm folding against independent computations: the folded and equalized
float models compute what the original does (torch's own forward as the oracle), the pair ranges match as the
paper's eq. 7 says (measured with a plain loop), and high-bias absorption moves exactly what its formula says."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from qcore.ptq.cle import absorb_high_biases, equalize, find_pairs
from qcore.ptq.fold import FoldError, fold


def _random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 2 - 1)
    return model.eval()


def _spread_channels(model: nn.Module, seed: int = 1) -> None:
    """Give each conv's output channels very different ranges (what makes per-tensor quantization lose)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data.mul_(torch.exp(torch.randn(m.out_channels, generator=g) * 1.5).reshape(-1, 1, 1, 1))


def _relu6_to_relu(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.ReLU6):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, nn.ReLU())
    return model


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
def test_folding_batchnorm_keeps_the_outputs(name):
    model = _random_bn(getattr(torchvision.models, name)(num_classes=10))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    folded = fold(model)
    assert folded.folded == folded.total_bn > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.model.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded.model(x), model(x), rtol=1e-4, atol=1e-4)
    assert "features.0.0" in dict(folded.model.named_modules()) or "conv1" in dict(folded.model.named_modules())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "vgg11_bn"])
def test_an_equalized_model_computes_what_the_original_does(name):
    model = _random_bn(getattr(torchvision.models, name)(num_classes=10))
    _spread_channels(model)
    reference = _relu6_to_relu(model)  # the paper replaces ReLU6 by ReLU (mobilenet_v2); the rest is exact
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    folded = fold(model)
    eq = equalize(folded)
    assert eq.pairs
    with torch.no_grad():
        want = reference(x)
        torch.testing.assert_close(folded.model(x), want, rtol=1e-3, atol=1e-4 * float(want.abs().max()))
    if name == "mobilenet_v2":
        assert eq.relu6_replaced == 35  # every ReLU6 between two layers of a block (17 blocks, two each, and one)


def test_each_pair_ends_with_equal_ranges_as_eq_7_says():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                          nn.Conv2d(8, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)).eval()
    _spread_channels(model)
    folded = fold(model)
    eq = equalize(folded, iterations=500, tol=1e-7)
    assert [(p.first, p.second) for p in eq.pairs] == [("0", "2"), ("2", "4"), ("4", "8")]
    mods = dict(folded.model.named_modules())
    for p in eq.pairs:
        w1, w2 = mods[p.first].weight.detach(), mods[p.second].weight.detach()
        for i in range(w1.shape[0]):  # a plain loop over channels: first's output i, second's input i
            r1 = float(w1[i].abs().max())
            if isinstance(mods[p.second], nn.Linear):
                r2 = float(w2[:, i].abs().max())
            elif mods[p.second].groups > 1:
                r2 = float(w2[i].abs().max())
            else:
                r2 = float(w2[:, i].abs().max())
            assert r1 == pytest.approx(r2, rel=1e-3), (p.first, p.second, i)


def test_what_cannot_be_equalized_is_counted_by_reason():
    model = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    pairs, blocked = find_pairs(fold(model).model)
    reasons = " ".join(blocked)
    assert "hardswish" in reasons and "several ops" in reasons
    assert len(pairs) > 0 and sum(blocked.values()) > len(pairs)


def test_high_biases_move_into_the_next_layer_by_the_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1)).eval()
    bn = model[1]
    bn.weight.data = torch.tensor([0.1, 0.2, 1.0, 0.05])  # gamma
    bn.bias.data = torch.tensor([2.0, 0.1, 5.0, 1.0])  # beta: channels 0, 2 and 3 sit far above zero
    folded = fold(model)
    eq = equalize(folded)
    conv1, conv2 = folded.model.get_submodule("0"), folded.model.get_submodule("3")
    b1, b2 = conv1.bias.detach().clone(), conv2.bias.detach().clone()
    k = eq.scales["0"]
    c = (bn.bias.detach() * k - 3 * (bn.weight.detach() * k).abs()).clamp(min=0)  # the paper's c = max(0, b - 3g)
    moved = absorb_high_biases(folded, eq)
    assert moved == int((c > 0).sum()) == 3
    torch.testing.assert_close(conv1.bias.detach(), b1 - c)
    expect = b2.clone()
    for o in range(5):  # b2 += W2 c, a plain loop
        for i in range(4):
            expect[o] += float(conv2.weight.detach()[o, i, 0, 0]) * float(c[i])
    torch.testing.assert_close(conv2.bias.detach(), expect, rtol=1e-5, atol=1e-6)


def test_a_model_torch_fx_cannot_trace_is_named():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(FoldError, match="torch.fx could not trace"):
        fold(Branchy())
