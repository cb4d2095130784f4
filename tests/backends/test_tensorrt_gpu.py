"""The tensorrt backend's real engines: run only where a CUDA GPU and requirements-gpu.txt are present (marked gpu;
skipped elsewhere with the reason). bench/gpu_figures.py measures their speed; this checks they are right."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18

from qcore.backends import get_backend, quantize
from qcore.quant.spec import QuantSpec

pytestmark = pytest.mark.gpu
_WHY = get_backend("tensorrt").problem(QuantSpec("int8", scheme="symmetric"), "cuda")
if _WHY:
    pytestmark = [pytest.mark.gpu, pytest.mark.skip(reason=f"TensorRT cannot run here: {_WHY}")]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    import os

    os.environ["QCORE_BUILDS"] = str(tmp_path_factory.mktemp("builds"))
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    calib = [torch.randn(16, 3, 64, 64) for _ in range(4)]
    test = torch.randn(32, 3, 64, 64)
    with torch.no_grad():
        ref = model.cuda()(test.cuda()).float().cpu()
    return model.cpu(), calib, test, ref


@pytest.mark.parametrize("spec, least_cosine", [
    (QuantSpec("fp32", backend="tensorrt"), 0.999), (QuantSpec("fp16", backend="tensorrt"), 0.995),
    (QuantSpec("int8", scheme="symmetric", backend="tensorrt"), 0.95),
    (QuantSpec("int8", scheme="symmetric", calibration="entropy", backend="tensorrt"), 0.95),
], ids=lambda v: v.label() if isinstance(v, QuantSpec) else None)
def test_an_engine_computes_what_the_model_does_and_is_cached(model_and_data, spec, least_cosine):
    model, calib, test, ref = model_and_data
    q = quantize(model, spec, calib, test[:8], "cuda")
    assert q.kernel == "native" and q.device == "cuda" and isinstance(q.artifact, bytes) and len(q.artifact) > 1000
    with torch.no_grad():
        out = q(test.cuda()).float().cpu()  # another batch: a second engine (built now, or padded into the first)
    assert F.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > least_cosine
    if not spec.is_float:
        assert q.quantized_layers == 21 and any("ModelOpt" in n for n in q.notes)
    again = quantize(model, spec, calib, test[:8], "cuda")
    assert again.builds and all(r.cached for r in again.builds[:1])  # the latency shape's engine: from the cache
