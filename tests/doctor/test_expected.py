"""What this CPU should give (qcore.doctor.expected): the range per instruction set, read from fake Hardware's flags,
checked against the published rows it is made of and against docs/doctor.md; where a point stands in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcore.doctor.expected import RANGES, expected_speedup, standing, why_unknown
from qcore.env.hardware import Hardware

DOC = Path(__file__).resolve().parents[2] / "docs" / "doctor.md"

# The published rows each range is made of, copied from the sources (docs/doctor.md): an independent oracle.
AMX_ROWS = {"EfficientNet-B3": 1.427185, "ResNet18": 2.834207, "Inception V3": 2.939142, "ResNet50": 3.64477,
            "ResNeXt101_32x8d": 5.454976}  # INC validated models, PyTorch 2.3.0 PTQ, Xeon 8480+
VNNI_PYTORCH_ROWS = [2.4, 3.7, 3.6, 4.0, 4.2, 3.9]  # OpenVINO 2021.4: i7-1185G7 and 8270, *-pytorch classifiers
VNNI_CLASSIFIER_ROWS = [3.5, 3.8, 3.8, 4.1, 2.4, 3.9, 2.4, 4.0, 3.7, 4.2, 3.6, 3.9, 3.6, 3.9, 3.2, 3.4]
# OpenVINO 2021.4, the classifier rows of the AVX2 columns: i7-8700T, then Xeon W-1290P (densenet-121, inception-v3,
# mobilenet-v2-1.0-224-TF, mobilenet-v2-pytorch, resnet-18-pytorch, resnet-50-pytorch, resnet-50-TF, squeezenet1.1)
AVX2_CLASSIFIER_ROWS = [1.8, 1.9, 1.5, 1.7, 1.9, 1.9, 1.9, 1.7, 1.9, 2.0, 1.8, 1.9, 2.1, 2.0, 2.0, 1.8]


def hw(*flags: str, machine: str = "x86_64", gpu: str | None = None) -> Hardware:
    return Hardware(cpu="test CPU", machine=machine, flags=tuple(flags), cores=2, threads=2, gpu=gpu)


@pytest.mark.parametrize("flags, isa, low, high", [
    (("avx2", "fma"), "AVX2 without VNNI", 1.7, 2.1),
    (("avx2", "avx512f", "avx512bw", "avx512_vnni"), "AVX-512 VNNI", 2.4, 4.2),
    (("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"), "AMX", 1.4, 5.5),
    (("avx2", "avx_vnni"), "AVX-VNNI (256-bit)", 2.4, 4.2),
    (("avx2", "avx512f", "avx512bw"), "AVX-512 without VNNI", 1.7, 2.1),
])
def test_the_flags_pick_the_documented_range(flags, isa, low, high):
    e = expected_speedup(hw(*flags))
    assert (e.isa, e.low, e.high) == (isa, low, high)
    assert e.url.startswith("https://") and e.source and e.note
    assert why_unknown(hw(*flags)) == ""


def test_the_amx_range_is_the_span_of_its_published_rows():
    e = RANGES["amx"]
    assert (e.low, e.high) == (round(min(AMX_ROWS.values()), 1), round(max(AMX_ROWS.values()), 1))
    for model, ratio in AMX_ROWS.items():
        assert model in e.note and f"{ratio:.2f}x" in e.note


def test_the_issue_ranges_hold_the_published_pytorch_rows():
    vnni, avx2 = RANGES["vnni"], RANGES["avx2"]
    assert (vnni.low, vnni.high) == (min(VNNI_CLASSIFIER_ROWS), max(VNNI_CLASSIFIER_ROWS))
    assert all(vnni.low <= r <= vnni.high for r in VNNI_PYTORCH_ROWS)
    outside = [r for r in AVX2_CLASSIFIER_ROWS if not avx2.low <= r <= avx2.high]
    assert outside == [1.5]  # mobilenet-v2-1.0-224-TF on the i7-8700T, named in the note
    assert "1.5x" in avx2.note and max(AVX2_CLASSIFIER_ROWS) == avx2.high


def test_the_docs_give_every_range_and_its_source():
    text = DOC.read_text()
    assert "## What this CPU should give" in text and "## Where the time goes" in text
    for e in RANGES.values():
        row = next((line for line in text.splitlines() if line.startswith(f"| {e.isa} |")), None)
        assert row is not None, f"docs/doctor.md has no table row for {e.isa}"
        assert f"{e.low:.1f}-{e.high:.1f}x" in row
    for url in {e.url for e in RANGES.values()}:
        assert url in text


def test_no_range_is_invented_where_none_was_published():
    assert expected_speedup(hw("sse4_2")) is None
    assert "AVX2" in why_unknown(hw("sse4_2"))
    arm = hw(machine="aarch64")
    assert expected_speedup(arm) is None and "ARM" in why_unknown(arm)


def test_a_gpu_gets_its_tensor_cores_peak_ratio():
    a100 = hw("avx2", gpu="NVIDIA A100-SXM4-80GB")
    e = expected_speedup(a100, "cuda")
    assert e.isa.startswith("Ampere") and e.low == e.high == 624 / 156
    assert expected_speedup(a100, "auto") == e  # auto: the GPU when there is one
    assert expected_speedup(a100, "cpu").isa == "AVX2 without VNNI"
    assert expected_speedup(hw("avx2", gpu="NVIDIA H100 80GB HBM3"), "cuda").isa.startswith("Hopper")
    other = hw("avx2", gpu="NVIDIA GeForce GTX 1080")
    assert expected_speedup(other, "cuda") is None and "GTX 1080" in why_unknown(other, "cuda")
    assert why_unknown(hw("avx2"), "cuda") == "no GPU on this machine"
    with pytest.raises(ValueError, match="device='tpu' is not allowed"):
        expected_speedup(a100, "tpu")


def test_standing_known_answers():
    vnni = RANGES["vnni"]
    assert standing(1.3, vnni) == "below the published range (1.3x vs 2.4-4.2x)"
    assert standing(3.0, vnni) == "within the published range (3x vs 2.4-4.2x)"
    assert standing(2.4, vnni) == "within the published range (2.4x vs 2.4-4.2x)"  # the bounds are inside
    assert standing(4.2, vnni).startswith("within")
    assert standing(5.0, vnni) == "above the published range (5x vs 2.4-4.2x)"
    assert standing(2.36, vnni) == "below the published range (2.36x vs 2.4-4.2x)"  # not rounded into the range
    assert standing(None, vnni) == "" and standing(2.0, None) == "" and standing(float("nan"), vnni) == ""
    peak = expected_speedup(hw(gpu="NVIDIA A100"), "cuda")
    assert standing(4.0, peak) == "at the published peak ratio (4x vs 4.0x)"
    assert standing(1.5, peak) == "below the published peak ratio (1.5x vs 4.0x)"
