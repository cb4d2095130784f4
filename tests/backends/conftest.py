"""Fixtures the backend tests share: a random-init resnet18 with a 10-class head and calibration batches;
for the peer engines (ONNX Runtime, OpenVINO) a small CNN, its calibration batches and a closeness check."""

import pytest
import torch
import torchvision
from torch import nn


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 3, 32, 32, generator=g) for _ in range(2)]


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, folded by the exporters
        model.features[1].running_mean.uniform_(-0.2, 0.2)
        model.features[1].running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def peer_calib():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 3, 32, 32, generator=g) for _ in range(4)]


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def _check_close(q, cnn, calib, tol):
    """Close to FP32 at the calibration size and also at another size (dynamic batch and spatial dims)."""
    for x in (calib[0][:8], torch.randn(3, 3, 48, 40)):
        out = q(x)
        assert out.dtype == torch.float32 and out.shape == (x.shape[0], 10)
        with torch.no_grad():
            assert _rel_err(out, cnn(x)) < tol


@pytest.fixture
def check_close():
    return _check_close
