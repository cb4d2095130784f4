"""qcore.backends: the registry is the one answer to "which backend runs this spec"."""

import subprocess
import sys
from pathlib import Path

import pytest

from qcore.backends import (
    Backend,
    BackendUnavailable,
    backends_for,
    get_backend,
    kind_problem,
    list_backends,
    resolve_backend,
    runnable_grid,
)
from qcore.quant.spec import CHOICES, KINDS, QuantSpec

ROOT = Path(__file__).resolve().parent.parent.parent


def test_registry():
    assert {"fx", "pt2e", "float", "weight-only"} <= set(list_backends())
    with pytest.raises(ValueError, match="available: "):
        get_backend("tensorrt-llm")


def test_the_backend_choices_are_the_registered_backends():
    """CHOICES["backend"] feeds the app's select boxes and the CLI's help without importing torch; the
    registry is what runs. A backend added to one and not the other fails here."""
    assert CHOICES["backend"][0] == "auto"
    assert sorted(CHOICES["backend"][1:]) == sorted(list_backends())
    for name in list_backends():
        assert set(get_backend(name).kinds) <= set(KINDS) and get_backend(name).kinds, name


# One spec per value of every field, each runnable on this CPU: a value no backend can run (a dead choice in
# the app's select boxes) fails, and so does a value added to CHOICES without an example here.
_EXAMPLES = {
    "precision": {"fp32": QuantSpec("fp32"), "fp16": QuantSpec("fp16"), "bf16": QuantSpec("bf16"),
                  "int8": QuantSpec("int8"), "int4": QuantSpec("int4", mode="weight-only", granularity="per-group")},
    "granularity": {g: QuantSpec("int8", mode="weight-only", granularity=g)
                    for g in ("per-tensor", "per-channel", "per-group")},
    "calibration": {c: QuantSpec("int8", granularity="per-tensor", calibration=c)
                    for c in ("minmax", "moving-average", "percentile", "entropy", "mse")},
    "scheme": {s: QuantSpec("int8", scheme=s) for s in ("symmetric", "asymmetric")},
    "mode": {m: QuantSpec("int8", mode=m) for m in ("static", "dynamic", "weight-only", "qat")},
    "backend": {"auto": QuantSpec("int8"), "fx": QuantSpec("int8", backend="fx"),
                "pt2e": QuantSpec("int8", backend="pt2e"), "float": QuantSpec("fp16", backend="float"),
                "torchao": QuantSpec("int8", mode="dynamic", backend="torchao"),
                "weight-only": QuantSpec("int4", mode="weight-only", backend="weight-only"),
                "ort": QuantSpec("int8", backend="ort"), "openvino": QuantSpec("int8", backend="openvino"),
                "xnnpack": QuantSpec("int8", backend="xnnpack"),
                "pt2e-openvino": QuantSpec("int8", backend="pt2e-openvino"),
                "tensorrt": QuantSpec("int8", scheme="symmetric", backend="tensorrt")},
    "rounding": {r: QuantSpec("int8", rounding=r) for r in ("nearest", "adaround")},
}  # fmt: skip


@pytest.mark.parametrize("field", [f for f in CHOICES if f != "device"])
def test_every_choice_can_be_measured_on_this_cpu(field):
    assert sorted(_EXAMPLES[field]) == sorted(CHOICES[field]), "a choice without an example (or a stale one)"
    for value, spec in _EXAMPLES[field].items():
        assert getattr(spec, field) == value
        if spec.backend == "tensorrt":  # CUDA only: refused here with that reason (tests/backends/test_tensorrt.py)
            assert "CUDA GPU only" in get_backend("tensorrt").problem(spec, "cpu")
            continue
        if spec.backend in ("ort", "openvino", "xnnpack") and get_backend(spec.backend).problem(spec, "cpu"):
            continue  # the optional engines are not installed here (requirements-peers.txt, requirements-xnnpack.txt)
        assert resolve_backend(spec, "cpu").name in backends_for(spec, "cpu"), spec.label()


@pytest.mark.parametrize(
    "spec, allowed",
    [
        (QuantSpec(backend="float"), "allowed: auto, fx, pt2e, xnnpack, pt2e-openvino, tensorrt, openvino, ort"),
        (QuantSpec("fp16", backend="fx"), "allowed: auto, float, openvino, ort, tensorrt, xnnpack"),
        (QuantSpec("int8", mode="weight-only", backend="pt2e"), "allowed: auto, weight-only, torchao"),
        (QuantSpec("int8", mode="dynamic", backend="weight-only"), "allowed: auto, fx, torchao, pt2e"),
    ],
    ids=lambda v: v.label() if isinstance(v, QuantSpec) else None,
)
def test_a_backend_that_never_runs_a_kind_says_which_do(spec, allowed):
    why = kind_problem(spec)
    assert why.startswith(f"backend={spec.backend!r} does not run") and why.endswith(allowed)
    with pytest.raises(BackendUnavailable, match=allowed):
        resolve_backend(spec, "cpu")


def test_autos_order_names_every_kind_and_only_backends_of_that_kind():
    from qcore.backends.auto import ORDER

    assert set(ORDER) == set(KINDS)
    for kind, names in ORDER.items():
        assert all(kind in get_backend(n).kinds for n in names), kind


def test_auto_prefers_its_order_and_falls_back_with_the_reasons():
    assert resolve_backend(QuantSpec("int8"), "cpu").name == "fx"
    assert resolve_backend(QuantSpec("int8", mode="dynamic", scheme="symmetric"), "cpu").name == "torchao"
    assert backends_for(QuantSpec("int8", mode="dynamic", scheme="symmetric"), "cpu")[0] == "torchao"
    with pytest.raises(BackendUnavailable, match="no CUDA kernel for int8 convolutions"):
        resolve_backend(QuantSpec("int8"), "cuda")


def test_the_runnable_grid_skips_what_no_backend_runs_with_the_reason():
    specs, skipped = runnable_grid(precision=["fp32", "int8", "int4"], mode=["static"], backend=["auto", "torchao"])
    assert [s.label() for s in specs] == ["FP32", "INT8 per-channel min-max asym static"]
    reasons = [why for _, why in skipped]
    assert any("not allowed with precision='int4'" in r for r in reasons)  # the maths (QuantSpec)
    assert any(r.startswith("backend='torchao' does not run mode='static'") for r in reasons)  # the registry
    assert any(r.startswith("backend='torchao' does not run fp32") for r in reasons)


def test_peer_backends_are_backends_and_import_lazily():
    code = (
        "import sys; import qcore.backends.ort, qcore.backends.openvino_backend;"
        "bad = [m for m in ('onnxruntime', 'openvino', 'nncf') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert isinstance(get_backend("ort"), Backend)
