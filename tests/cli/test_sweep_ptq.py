"""``sweep --equalize/--bias-correction/--rounding``: comma lists that join the grid like every other field; a bad
value is a usage error naming what is allowed; ``layers`` and ``mixed`` take one value each. No sweep runs."""

from __future__ import annotations

import pytest

from qcore.backends import runnable_grid
from qcore.cli import build_parser, main
from qcore.cli.layers import _spec
from qcore.cli.sweep import grid_of


def _grid(*argv: str):
    return runnable_grid(**grid_of(build_parser().parse_args(["sweep", *argv])))


def test_without_the_flags_the_grid_is_unchanged():
    specs, skipped = _grid()
    assert [s.label() for s in specs] == ["FP32", "INT8 per-channel min-max asym static"] and not skipped
    assert not any(s.asks_ptq for s in specs)


def test_the_flags_are_comma_lists_expanded_in_the_grid():
    specs, skipped = _grid("--precision", "int8", "--equalize", "off,on", "--bias-correction", "on",
                           "--rounding", "nearest,adaround", "--adaround-iters", "100,200", "--backend", "fx,ort")
    labels = [s.label() for s in specs]
    assert "INT8 per-channel min-max asym static [fx] +bc" in labels
    assert "INT8 per-channel min-max asym static [fx] adaround(200 it) +cle +bc" in labels
    assert len(labels) == 6  # fx: {off, on} x {nearest, adaround 100, adaround 200}
    # ort quantizes its weights itself: every bias-corrected combination on it is skipped, naming why
    assert len(skipped) == 6 and all("the ort backend quantizes the weights itself" in why and
                                     "allowed: fx, pt2e, pt2e-openvino, weight-only" in why for _, why in skipped)


def test_a_float_cast_has_no_algorithm():
    specs, _ = _grid("--precision", "fp32,int8", "--equalize", "off,on", "--rounding", "nearest,adaround")
    assert [s.label() for s in specs if s.is_float] == ["FP32"] and len(specs) == 1 + 4  # one FP32, not four


def test_the_adaround_numbers_reach_the_spec_and_qat_is_skipped():
    specs, skipped = _grid("--precision", "int4", "--mode", "weight-only,qat", "--rounding", "adaround",
                           "--adaround-iters", "50", "--adaround-images", "64")
    assert [s.label() for s in specs] == ["INT4 per-channel min-max asym weight-only adaround(50 it, 64 img)"]
    assert specs[0].adaround_images == 64 and specs[0].to_dict()["rounding"] == "adaround"
    assert any("post-training algorithms; mode='qat' trains the weights" in why for _, why in skipped)


@pytest.mark.parametrize("flag, value, said", [
    ("--rounding", "up", "argument --rounding: 'up' is not allowed; allowed: nearest, adaround"),
    ("--equalize", "maybe", "argument --equalize: 'maybe' is not allowed; allowed: off, on"),
    ("--bias-correction", "off,yes", "argument --bias-correction: 'yes' is not allowed; allowed: off, on"),
    ("--adaround-iters", "0", "argument --adaround-iters: adaround_iters=0 is not allowed; allowed: an integer "
                              "from 1 to 20,000"),
    ("--adaround-images", "16", "argument --adaround-images: adaround_images=16 is fewer than one AdaRound batch "
                                "(32 images); allowed: 32 to 10,000"),
])  # fmt: skip
def test_a_bad_value_names_what_is_allowed(flag, value, said, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", flag, value])
    assert exc.value.code == 2 and said in capsys.readouterr().err


def test_resume_takes_the_algorithms_from_the_job(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--resume", "j1", "--rounding", "adaround"])
    assert exc.value.code == 2 and "drop --rounding" in capsys.readouterr().err


def test_layers_and_mixed_take_one_value_each():
    args = build_parser().parse_args(["layers", "--precision", "int4", "--mode", "weight-only", "--rounding",
                                      "adaround", "--bias-correction", "on", "--adaround-iters", "40"])
    assert _spec(args).label() == "INT4 per-channel min-max asym weight-only adaround(40 it) +bc"
    assert _spec(build_parser().parse_args(["mixed", "--equalize", "on"])).equalize
    assert not _spec(build_parser().parse_args(["mixed"])).asks_ptq
