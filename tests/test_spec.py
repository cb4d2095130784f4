import pytest

from qcore.quant.spec import CHOICES, DEFAULT_GRID, FP32, QuantSpec, SpecError, expand_grid
from qcore.quant.spec_text import parse_spec


@pytest.mark.parametrize(
    "kwargs, field, allowed",
    [
        (dict(precision="int3"), "precision='int3'", "fp32, fp16, bf16, int8, int4"),
        (dict(granularity="per-row"), "granularity='per-row'", "per-tensor, per-channel, per-group"),
        (dict(calibration="kl"), "calibration='kl'", "minmax, moving-average, percentile, entropy, mse"),
        (dict(granularity="per-group", mode="static"), "granularity='per-group'", "per-tensor, per-channel"),
        (dict(precision="int4", mode="static"), "mode='static'", "weight-only"),
        (dict(mode="dynamic", calibration="entropy"), "calibration='entropy'", "minmax"),
        (dict(mode="weight-only", calibration="entropy"), "calibration='entropy'", "minmax, percentile, mse"),
        (dict(mode="weight-only", granularity="per-group", group_size=48), "group_size=48", "16, 32, 64, 128, 256"),
        (dict(calibration="percentile", percentile=101), "percentile=101", "(50, 100]"),
        (dict(backend="tensorrt-llm"), "backend='tensorrt-llm'", "auto, fx, pt2e, torchao, float, weight-only, ort"),
        (dict(device="tpu"), "device='tpu'", "auto, cpu, cuda"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_impossible_specs_name_the_field_and_what_is_allowed(kwargs, field, allowed):
    with pytest.raises(SpecError) as err:
        QuantSpec(**kwargs)
    assert field in str(err.value) and allowed in str(err.value)
    assert isinstance(err.value, ValueError)


def test_defaults_are_valid_static_int8():
    s = QuantSpec()
    assert (s.precision, s.granularity, s.calibration, s.scheme, s.mode) == (
        "int8",
        "per-channel",
        "minmax",
        "asymmetric",
        "static",
    )
    assert s.group_size == 0 and s.percentile == 0.0  # unused numbers are normalised


def test_float_specs_are_normalised():
    a = QuantSpec("fp16", calibration="entropy", granularity="per-group")
    b = QuantSpec("fp16")
    assert a == b and a.calibration == "n/a" and a.label() == "FP16"


def test_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        QuantSpec().precision = "int4"


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(),
        FP32,
        QuantSpec(
            "int4", mode="weight-only", granularity="per-group", group_size=128, calibration="mse", scheme="symmetric"
        ),
        QuantSpec("int8", calibration="percentile", percentile=99.9, backend="pt2e"),
    ],
    ids=lambda s: s.label(),
)
def test_dict_round_trip(spec):
    assert QuantSpec.from_dict(spec.to_dict()) == spec


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(SpecError, match="unknown QuantSpec field"):
        QuantSpec.from_dict({"precision": "int8", "bits": 3})


def test_expand_grid_skips_with_reasons_and_dedupes():
    specs, skipped = expand_grid(
        precision=["fp32", "int8", "int4"], mode=["static", "weight-only"], calibration=["minmax", "entropy"]
    )
    labels = [s.label() for s in specs]
    assert labels.count("FP32") == 1
    assert "INT8 per-channel entropy (KL) asym static" in labels
    assert all(s.precision != "int4" or s.mode == "weight-only" for s in specs)
    reasons = [r for _, r in skipped]
    assert any("weight-only" in r and "int4" in r for r in reasons)
    assert any("calibration='entropy' is not allowed in weight-only" in r for r in reasons)


def test_which_backend_runs_a_spec_is_not_the_specs_business():
    """The maths is checked here; whether the fx backend runs FP16 is the registry's answer (tests/backends)."""
    assert QuantSpec("fp16", backend="fx").backend == "fx"
    assert QuantSpec("int8", mode="weight-only", backend="pt2e").kind == "weight-only"


def test_the_reference_is_torch_fp32_only():
    assert FP32.is_reference and QuantSpec("fp32", backend="float").is_reference
    assert not QuantSpec("fp32", backend="ort").is_reference  # FP32 on another engine is a variant
    assert not QuantSpec("fp32", backend="openvino").is_reference and not QuantSpec("fp16").is_reference
    assert [QuantSpec(p).kind for p in ("fp32", "int8")] == ["float", "static"]


def test_the_default_grid_is_the_baseline_and_static_int8():
    specs, skipped = expand_grid(**DEFAULT_GRID)
    assert specs == [FP32, QuantSpec()] and not skipped
    assert set(DEFAULT_GRID) <= set(CHOICES) | {"group_size", "percentile"}


# -- labels read back (parse_spec), spec lists (parse_specs), the modes a precision allows -------------------


def test_every_label_reads_back_as_its_spec():
    from qcore.quant.spec import GROUP_SIZES

    specs, _ = expand_grid(**{k: list(v) for k, v in CHOICES.items() if k != "device"},
                           group_size=list(GROUP_SIZES), percentile=[99.0, 99.99, 99.99999, 100.0, 73.123456789])
    assert len(specs) > 1000
    for spec in specs:
        assert parse_spec(spec.label(), device=spec.device) == spec, spec.label()
    assert QuantSpec("fp32", backend="ort").label() == "FP32 [ort]"  # a variant, never mistaken for the baseline


@pytest.mark.parametrize("text, expected", [
    ("int8 per-channel minmax static", QuantSpec()),
    ("INT4 weight-only per-group 64 mse", QuantSpec("int4", granularity="per-group", group_size=64, calibration="mse",
                                                    mode="weight-only")),
    ("int8 per-tensor percentile 99.9 sym", QuantSpec(granularity="per-tensor", calibration="percentile",
                                                      percentile=99.9, scheme="symmetric")),
    ("INT8 moving-average min-max", QuantSpec(calibration="moving-average")),
    ("int4 per-group(32) MSE weight-only backend=torchao", QuantSpec("int4", granularity="per-group", group_size=32,
                                                                     calibration="mse", mode="weight-only",
                                                                     backend="torchao")),
    ("fp16", QuantSpec("fp16")),
], ids=lambda v: v if isinstance(v, str) else None)  # fmt: skip
def test_short_texts_parse_with_defaults_for_what_is_not_said(text, expected):
    assert parse_spec(text) == expected
    assert parse_spec(text, device="cpu").device == "cpu"


@pytest.mark.parametrize("text, message", [
    ("", "an empty spec"),
    ("per-channel static", "names no precision; allowed: fp32, fp16, bf16, int8, int4"),
    ("int8 fast", "'fast' in 'int8 fast' is not a precision, granularity, calibration, scheme or mode"),
    ("int8 int4", "precision is given twice ('int8' and 'int4')"),
    ("int8 static(3)", "only per-group(N) and percentile(P) take a number"),
    ("int8 bits=3", "'bits' in 'int8 bits=3' is not a QuantSpec field"),
    ("int8 per-group(x) weight-only", "'x' is not an integer"),
    ("int4 per-channel static", "mode='static' is not allowed with precision='int4'"),
    ("int8 [tensorrt-llm]", "backend='tensorrt-llm' is not allowed"),
], ids=lambda v: v or "empty")  # fmt: skip
def test_texts_that_are_not_specs_say_why(text, message):
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    assert message in str(err.value)


def test_a_spec_list_reads_labels_words_and_json_lines_or_a_json_list():
    from qcore.quant.spec_text import parse_specs

    text = """# four INT8 static settings and one INT4
    INT8 per-channel min-max asym static
    int8 per-tensor minmax static

    int8 per-channel entropy static
    {"precision": "int8", "granularity": "per-tensor", "calibration": "mse"}
    int4 weight-only per-group 64 mse
    """
    specs = parse_specs(text, device="cpu")
    assert [s.label() for s in specs] == [
        "INT8 per-channel min-max asym static", "INT8 per-tensor min-max asym static",
        "INT8 per-channel entropy (KL) asym static", "INT8 per-tensor MSE asym static",
        "INT4 per-group(64) MSE asym weight-only"]  # fmt: skip
    assert {s.device for s in specs} == {"cpu"}
    as_json = parse_specs('["int8 per-tensor minmax static", {"precision": "fp16"}]')
    assert as_json == [QuantSpec(granularity="per-tensor"), QuantSpec("fp16")]
    with pytest.raises(SpecError, match=r"spec 2 \('int9 static'\): 'int9'"):
        parse_specs("int8\nint9 static")
    with pytest.raises(SpecError, match="spec 1 .*unknown QuantSpec field"):
        parse_specs('{"precision": "int8", "bits": 3}')


def test_the_modes_a_precision_allows_come_from_the_rules():
    from qcore.quant.spec import allowed_modes

    assert allowed_modes("int4") == ["weight-only", "qat"]  # QAT of INT4 weight-only
    assert allowed_modes("int8") == ["static", "dynamic", "weight-only", "qat"]
    assert allowed_modes("int8", granularity="per-group") == ["weight-only"]
    assert allowed_modes("int8", calibration="entropy") == ["static", "qat"]  # QAT starts from PTQ's ranges
    assert allowed_modes("int4", calibration="entropy") == ["weight-only", "qat"]  # no mode fits: the precision's own
    assert allowed_modes("fp16") == []


def test_keep_float_is_a_sorted_set_of_names_with_a_stable_short_label():
    a = QuantSpec("int8", keep_float=("layer1.0.conv1", "fc", "conv1"))
    b = QuantSpec("int8", keep_float=["conv1", "fc", "layer1.0.conv1", "fc"])
    assert a == b and a.keep_float == ("conv1", "fc", "layer1.0.conv1") and hash(a) == hash(b)
    assert a.label() == b.label() and a.label().startswith("INT8 per-channel min-max asym static +fp32(3 layers #")
    assert QuantSpec("int8", keep_float=("fc",)).label().endswith(" +fp32(fc)")
    assert QuantSpec("int8", keep_float="fc;conv1").keep_float == ("conv1", "fc")  # a CSV cell or a URL value
    assert QuantSpec("fp32", keep_float=("fc",)).keep_float == ()  # nothing is quantized, nothing kept out of it


def test_keep_float_round_trips_and_leaves_older_dicts_alone():
    spec = QuantSpec("int4", mode="weight-only", granularity="per-group", keep_float=("fc", "conv1"))
    d = spec.to_dict()
    assert d["keep_float"] == ["conv1", "fc"] and QuantSpec.from_dict(d) == spec
    assert "keep_float" not in QuantSpec("int8").to_dict()  # stored spec keys of earlier rows still match


@pytest.mark.parametrize("bad", [("",), (3,), "  ;", 5])
def test_keep_float_refuses_what_is_not_a_list_of_names(bad):
    if bad == "  ;":  # only separators: no names at all, which is the default
        assert QuantSpec("int8", keep_float=bad).keep_float == ()
        return
    with pytest.raises(SpecError, match="keep_float=.* is not allowed; allowed: a list of module names"):
        QuantSpec("int8", keep_float=bad)


INT4 = QuantSpec("int4", mode="weight-only", granularity="per-channel")


def test_keep_int8_under_int4_is_a_sorted_set_with_its_own_label_and_round_trips():
    spec = INT4.replace(keep_int8="fc;conv1", keep_float=("layer1.0.conv1",))
    assert spec.keep_int8 == ("conv1", "fc") and spec == INT4.replace(keep_int8=["fc", "conv1", "fc"],
                                                                      keep_float=["layer1.0.conv1"])
    assert spec.label().endswith(" +fp32(layer1.0.conv1) +int8(2 layers #" + spec.label()[-5:])
    assert INT4.replace(keep_int8=("fc",)).label() == "INT4 per-channel min-max asym weight-only +int8(fc)"
    d = spec.to_dict()
    assert d["keep_int8"] == ["conv1", "fc"] and QuantSpec.from_dict(d) == spec
    assert "keep_int8" not in INT4.to_dict()  # stored spec keys of earlier rows still match
    assert QuantSpec("fp16", keep_int8=("fc",)).keep_int8 == ()  # a float cast keeps nothing out of anything
    assert parse_spec("int4 weight-only keep_int8=fc;conv1") == INT4.replace(keep_int8=("conv1", "fc"))


def test_keep_int8_is_refused_outside_int4_weight_only_and_with_a_layer_in_both_lists():
    with pytest.raises(SpecError, match=r"keep_int8 \(fc\) is not allowed with precision='int8' mode='static'.*"
                                        r"allowed: precision='int4' mode='weight-only' \(or keep_float for FP32\)"):
        QuantSpec("int8", keep_int8=("fc",))
    with pytest.raises(SpecError, match="keep_int8 .* is not allowed with precision='int8' mode='weight-only'"):
        QuantSpec("int8", mode="weight-only", keep_int8=("fc",))
    with pytest.raises(SpecError, match="fc is in both keep_float and keep_int8; allowed: each layer in one"):
        INT4.replace(keep_float=("conv1", "fc"), keep_int8=("fc",))
    with pytest.raises(SpecError, match="keep_int8=5 is not allowed; allowed: a list of module names"):
        INT4.replace(keep_int8=5)
    specs, skipped = expand_grid(precision=["int8", "int4"], mode=["weight-only"], keep_int8=[("fc",)])
    assert [s.precision for s in specs] == ["int4"] and "keep_int8" in skipped[0][1]


def test_fp32_qat_is_the_baseline_not_a_skip_and_float_qat_names_both_qat_precisions():
    """Issue 24, item 7: FP32 is the baseline (a float precision has no mode), so FP32 x qat is not counted among
    the skipped combinations; the reason FP16 QAT is skipped names INT4 QAT too."""
    specs, skipped = expand_grid(precision=["fp32", "fp16", "int8"], mode=["static", "qat"], qat_epochs=[0.1])
    assert [s.label() for s in specs][:2] == ["FP32", "FP16"] and sum(s.is_reference for s in specs) == 1
    assert [(c["precision"], c["mode"]) for c, _ in skipped] == [("fp16", "qat")]
    assert skipped[0][1].endswith("allowed: precision int8 (QAT of static INT8), int4 (QAT of INT4 weight-only)")
    only_qat, skipped = expand_grid(precision=["fp32"], mode=["qat"])
    assert only_qat == [FP32] and skipped == []
    _, skipped = expand_grid(precision=["fp32"], mode=["qat"], backend=["ort"])  # FP32 on ORT is a variant
    assert len(skipped) == 1 and "mode='qat' is not allowed with precision='fp32'" in skipped[0][1]
