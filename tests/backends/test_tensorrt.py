"""The tensorrt backend without a GPU: which specs it refuses and why (against NVIDIA's compute-capability tables),
the package checks, the engine cache's keys and its refusal of another GPU's engine, and ModelOpt's calibration as
qcore drives it (on the CPU: fake quantization in torch) against independent computations: max |x|, numpy's
percentile, a brute-force MSE search, TensorRT's entropy search written out in tests/test_entropy_oracle.py, and
ModelOpt's own INT8 preset. The engines themselves: tests/backends/test_tensorrt_gpu.py (marked gpu)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from qcore.backends import backends_for, get_backend, kind_problem, resolve
from qcore.backends.buildcache import BuildCache
from qcore.backends.tensorrt import _load_engine, calibrate, installed, quantized_layers
from qcore.backends.tensorrt_recipe import (
    engine_parts,
    float_dtype,
    foreign_engine,
    modelopt_config,
    spec_problem,
    version_problem,
    wanted_tensorrt,
)
from qcore.env.gpu import GpuInfo, ability_text, formats, lacks, oom_message
from qcore.quant.spec import QuantSpec
from tests.test_entropy_oracle import reference_entropy_cut

# NVIDIA's tables (CUDA programming guide, TensorRT support matrix): compute capability -> tensor-core formats
PUBLISHED = {
    "Tesla V100": ((7, 0), {"fp16"}),
    "Tesla T4": ((7, 5), {"fp16", "int8"}),
    "NVIDIA A100": ((8, 0), {"fp16", "int8", "bf16", "tf32"}),
    "NVIDIA L4": ((8, 9), {"fp16", "int8", "bf16", "tf32", "fp8"}),
    "NVIDIA H100": ((9, 0), {"fp16", "int8", "bf16", "tf32", "fp8"}),
    "Tesla P4": ((6, 1), set()),
}
H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0), 81559, driver="580.65")
T4 = GpuInfo("Tesla T4", (7, 5), 15360, driver="550.1")
SYM = QuantSpec("int8", scheme="symmetric", backend="tensorrt")


@pytest.mark.parametrize("name", PUBLISHED)
def test_formats_follow_nvidias_tables(name):
    cc, want = PUBLISHED[name]
    assert set(formats(cc)) == want
    for fmt in ("fp16", "int8", "bf16", "tf32", "fp8"):
        assert (lacks(fmt, cc, name) is None) == (fmt in want)


def test_the_home_line_names_what_the_gpu_lacks():
    assert ability_text(None).startswith("No CUDA GPU is visible")
    a100 = ability_text(GpuInfo("NVIDIA A100", (8, 0), 40960, driver="550.1"))
    assert "Tensor cores: FP16, INT8, BF16, TF32; not FP8 (E4M3) (needs 8.9, Ada or Hopper)." in a100
    assert "compute capability 8.0, 40 GiB, driver 550.1" in a100
    assert "not" not in ability_text(H100).split("Tensor cores:")[1]


@pytest.mark.parametrize("spec, device, gpu, words", [
    (SYM, "cpu", None, "run on a CUDA GPU only; device='cpu' (allowed: cuda)"),
    (SYM, "cuda", None, "no CUDA GPU is visible"),
    (SYM.replace(scheme="asymmetric"), "cuda", H100, "INT8 is symmetric (zero point 0"),
    (SYM.replace(calibration="moving-average"), "cuda", H100, "ModelOpt has no moving-average calibrator"),
    (SYM.replace(calibration="mse"), "cuda", H100, "histogram MSE search calls its fake quantizer with num_bits"),
    (SYM, "cuda", GpuInfo("Tesla V100", (7, 0), 16384), "INT8 engines: INT8 needs compute capability 7.5 or newer "
                                                         "(Turing); Tesla V100 is 7.0"),
    (QuantSpec("bf16", backend="tensorrt"), "cuda", T4, "BF16 needs compute capability 8.0 or newer (Ampere); "
                                                         "Tesla T4 is 7.5"),
    (QuantSpec("fp16", backend="tensorrt"), "cuda", GpuInfo("Tesla P4", (6, 1), 8192), "FP16 needs compute "
                                                                                         "capability 7.0"),
], ids=["cpu", "no-gpu", "asym", "moving-average", "mse", "int8-on-volta", "bf16-on-turing", "fp16-on-pascal"])
def test_refusals_name_the_reason_and_what_is_allowed(spec, device, gpu, words):
    assert words in spec_problem(spec, device, gpu)


@pytest.mark.parametrize("spec", [SYM, SYM.replace(granularity="per-tensor"), SYM.replace(calibration="entropy"),
                                  SYM.replace(calibration="percentile", percentile=99.9),
                                  QuantSpec("fp16", backend="tensorrt"),
                                  QuantSpec("bf16", backend="tensorrt"), QuantSpec("fp32", backend="tensorrt"),
                                  SYM.replace(keep_float=("fc",))], ids=lambda s: s.label())
def test_what_it_runs_on_a_recent_gpu(spec):
    assert spec_problem(spec, "cuda", H100) is None


def test_kinds_it_never_runs_are_refused_before_any_gpu_is_asked():
    assert "backend='tensorrt' does not run mode='dynamic'" in kind_problem(
        QuantSpec("int8", mode="dynamic", backend="tensorrt"))
    assert "does not run mode='weight-only'" in kind_problem(
        QuantSpec("int4", mode="weight-only", granularity="per-group", backend="tensorrt"))


def test_on_this_machine_it_is_listed_unavailable_with_the_reason_never_an_import_error():
    spec = QuantSpec("int8", scheme="symmetric")
    assert "tensorrt" not in backends_for(spec, "cpu")
    assert "CUDA GPU only" in get_backend("tensorrt").problem(spec, "cpu")
    assert resolve(spec, "cpu").backend.name != "tensorrt"  # auto still finds its CPU backend
    got = installed()
    assert set(got) == {"torch_tensorrt", "tensorrt", "modelopt"} and got["modelopt"]  # requirements-test.txt


def test_versions():
    assert wanted_tensorrt(["packaging>=23", "tensorrt-cu13<11.2.0,>=11.1.0", "tensorrt-cu13-libs<11.2.0,>=11.1.0",
                            'executorch<1.5,>=1.4.1; extra == "all"']) == "11.1"
    assert wanted_tensorrt(["torch<2.15"]) is None
    ok = {"torch_tensorrt": "2.14.0", "tensorrt": "11.1.0.6", "modelopt": "0.47.0"}
    assert version_problem(ok, "11.1", quantizes=True) is None
    assert "torch-tensorrt is not installed; pip install -r requirements-gpu.txt" in version_problem(
        {**ok, "torch_tensorrt": None}, "11.1", True)
    mismatch = version_problem({**ok, "tensorrt": "10.13.3"}, "11.1", True)
    assert "built for TensorRT 11.1.x but TensorRT 10.13.3 is installed" in mismatch
    assert version_problem({**ok, "modelopt": None}, "11.1", quantizes=False) is None  # float: no ModelOpt needed
    assert "nvidia-modelopt" in version_problem({**ok, "modelopt": None}, "11.1", quantizes=True)


def test_the_float_type_of_an_int8_engine():
    assert float_dtype(SYM, H100) == "fp16" and float_dtype(QuantSpec("bf16"), H100) == "bf16"
    assert float_dtype(SYM, GpuInfo("GTX 1080", (6, 1), 8192)) == "fp32"


# --- the engine cache -----------------------------------------------------------------------------------------------


def _parts(gpu=H100, versions=None, shape=(1, 3, 224, 224), spec=SYM):
    sig = {"shape": list(shape), "stride": [], "dtype": "torch.float16"}
    return engine_parts("graph-digest", spec, gpu, versions or {"tensorrt": "11.1.0", "torch_tensorrt": "2.14.0"}, sig)


def test_an_engine_is_keyed_by_gpu_driver_tensorrt_shape_and_spec(tmp_path):
    cache = BuildCache(tmp_path)
    base = cache.key("trt", _parts())
    assert cache.key("trt", _parts()) == base
    others = [_parts(gpu=T4), _parts(gpu=GpuInfo(H100.name, H100.capability, H100.memory_mb, driver="590.1")),
              _parts(versions={"tensorrt": "11.1.1", "torch_tensorrt": "2.14.0"}), _parts(shape=(32, 3, 224, 224)),
              _parts(spec=SYM.replace(calibration="entropy"))]
    keys = [cache.key("trt", p) for p in others]
    assert base not in keys and len(set(keys)) == len(keys)


def test_an_engine_built_on_another_gpu_is_rebuilt_never_loaded(tmp_path):
    cache, loaded, built = BuildCache(tmp_path), [], []

    def build_on(gpu):
        def build(path):
            path.write_bytes(f"engine for {gpu.name}".encode())
            built.append(gpu.name)
            return {"unit": "engine", "gpu": {"name": gpu.name, "capability": list(gpu.capability),
                                              "driver": gpu.driver}}
        return build

    def load(path):
        blob = _load_engine(path, H100, make=lambda b: b)
        loaded.append(blob)
        return blob

    parts = _parts()
    _, first = cache.get_or_build("trt", parts, build_on(T4), lambda p: p.read_bytes(), suffix=".engine")
    assert not first.cached  # a T4's engine under this key: a copied builds folder, say
    blob, record = cache.get_or_build("trt", parts, build_on(H100), load, suffix=".engine")
    assert blob == b"engine for NVIDIA H100 80GB HBM3" and built == ["Tesla T4", "NVIDIA H100 80GB HBM3"]
    assert "built on Tesla T4 (driver 550.1), not NVIDIA H100 80GB HBM3" in record.rebuilt_because
    assert b"engine for Tesla T4" not in loaded
    meta = json.loads(next(tmp_path.glob("trt-*.json")).read_text())
    assert foreign_engine(meta["extra"], H100) is None and "which GPU" in foreign_engine({}, H100)


def test_out_of_memory_names_the_batch_and_the_memory():
    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    text = oom_message(exc, 256, H100, free_mb=512)
    assert text.startswith("out of GPU memory at batch size 256 (NVIDIA H100 80GB HBM3, 79.6 GiB, 0.5 GiB free")
    assert "Tried to allocate 2.00 GiB" in text and "smaller batch size" in text


# --- ModelOpt's calibration as qcore drives it (CPU) -----------------------------------------------------------------


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.relu, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.conv2(self.relu(self.conv1(x)))).flatten(1))


def _calibrated(spec, seed=0):
    torch.manual_seed(seed)
    model = _Two().eval()
    calib = [torch.randn(4, 3, 12, 12) for _ in range(3)]
    seen = []
    hook = model.conv2.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    with torch.no_grad():
        for x in calib:
            model(x)
    hook.remove()
    weights = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    calibrate(model, spec, calib, "cpu")
    return model, torch.cat(seen).abs().flatten(), weights


def test_minmax_is_max_abs_of_what_each_layer_is_handed():
    model, post_relu, weights = _calibrated(SYM)
    assert float(model.conv2.input_quantizer.amax) == pytest.approx(float(post_relu.max()), rel=1e-6)
    w = weights["conv2"]
    assert torch.allclose(model.conv2.weight_quantizer.amax.flatten(), w.abs().amax(dim=(1, 2, 3)), rtol=1e-6)
    per_tensor, _, _ = _calibrated(SYM.replace(granularity="per-tensor"))
    assert float(per_tensor.conv2.weight_quantizer.amax) == pytest.approx(float(w.abs().max()), rel=1e-6)
    assert quantized_layers(model) == 3


def test_percentile_is_numpys_within_one_histogram_bin():
    model, post_relu, _ = _calibrated(SYM.replace(calibration="percentile", percentile=99.0))
    want = float(np.percentile(post_relu.numpy(), 99.0))
    assert float(model.conv2.input_quantizer.amax) == pytest.approx(want, abs=float(post_relu.max()) / 2048 * 1.5)


def test_entropy_is_tensorrts_kl_search_on_modelopts_histogram():
    model, post_relu, _ = _calibrated(SYM.replace(calibration="entropy"))
    cal = model.conv2.input_quantizer._calibrator
    hist, edges = cal._calib_hist.double().numpy(), cal._calib_bin_edges.double().numpy()
    cut = reference_entropy_cut(hist, nbins=128, start_bin=128)
    assert float(model.conv2.input_quantizer.amax) == pytest.approx(edges[cut], rel=1e-6)
    assert 0.3 * float(post_relu.max()) < edges[cut] <= float(post_relu.max()) + 1e-6  # not clipping most of it


def _mse(x: torch.Tensor, amax: float) -> float:
    scale = amax / 127
    return float(((torch.clamp(torch.round(x / scale), -127, 127) * scale - x) ** 2).mean())


def test_modelopts_mse_search_is_still_broken_so_it_stays_refused():
    """Against a brute-force search, ModelOpt 0.47's histogram MSE is thousands of times off (why the backend refuses
    calibration='mse'). When an upgrade fixes it this fails: then allow mse in tensorrt_recipe.CALIBRATIONS."""
    from modelopt.torch.quantization.calib import HistogramCalibrator

    _, post_relu, _ = _calibrated(SYM)
    cal = HistogramCalibrator(num_bits=8, axis=None, unsigned=False)
    cal.collect(post_relu)
    amax = float(cal.compute_amax("mse"))
    top = float(post_relu.max())
    best = min(_mse(post_relu, a) for a in np.linspace(top / 64, top, 400))
    assert _mse(post_relu, amax) > 100 * best


def test_kept_layers_have_no_quantizer_on():
    model, _, _ = _calibrated(SYM.replace(keep_float=("conv2",)))
    assert model.conv2.input_quantizer._disabled and model.conv2.weight_quantizer._disabled
    assert not model.conv1.weight_quantizer._disabled and quantized_layers(model) == 2


@pytest.mark.slow
def test_the_config_is_modelopts_int8_preset_on_a_torchvision_cnn():
    import modelopt.torch.quantization as mtq
    from modelopt.torch.quantization.nn import TensorQuantizer
    from torchvision.models import resnet18

    torch.manual_seed(0)
    base = resnet18(num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32)
    ours, theirs = base, __import__("copy").deepcopy(base)
    calibrate(ours, SYM, [x], "cpu")
    mtq.quantize(theirs, mtq.INT8_DEFAULT_CFG, forward_loop=lambda m: m(x))
    assert modelopt_config(SYM)["algorithm"] == mtq.INT8_DEFAULT_CFG["algorithm"]
    q = {n: m for n, m in ours.named_modules() if isinstance(m, TensorQuantizer)}
    p = {n: m for n, m in theirs.named_modules() if isinstance(m, TensorQuantizer)}
    assert q.keys() == p.keys()
    for name in q:
        assert (q[name]._disabled, q[name].num_bits, q[name].axis) == (p[name]._disabled, p[name].num_bits,
                                                                        p[name].axis), name
        if not q[name]._disabled:
            assert torch.equal(q[name].amax, p[name].amax), name
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
