"""qcore.guards.limits: one table of ranges, the same words from the CLI, SweepConfig and the app."""

from __future__ import annotations

import math

import pytest

from qcore.guards.limits import LIMITS, MAX_INPUT_VALUES, LimitError, check_input_values
from qcore.runs.sweep import SweepConfig


def test_check_takes_the_range_and_refuses_everything_else():
    lim = LIMITS["batch_size"]
    assert lim.check(1) == 1 and lim.check(1024) == 1024
    for bad in (0, 1025, -1, 1.0, True, "8", None, 2**65):
        with pytest.raises(LimitError, match=r"^batch_size=.* is not allowed; allowed: 1\.\.1024 \(images per timed"):
            lim.check(bad)
    assert LIMITS["image_size"].check(None, none="the dataset's") is None
    with pytest.raises(LimitError, match=r"or None \(the dataset's\)$"):
        LIMITS["image_size"].check(7, none="the dataset's")


def test_floats_refuse_nan_and_infinity_and_open_ends():
    budget = LIMITS["latency_budget_s"]
    assert budget.check(6) == 6 and budget.check(0.1) == 0.1
    for bad in (math.nan, math.inf, -math.inf, 0.0, 300.5):
        assert not budget.ok(bad)
    pct = LIMITS["percentile"]
    assert not pct.ok(50.0) and pct.ok(50.001) and pct.ok(100.0)
    assert pct.allowed() == "more than 50 up to 100 (percentile of |x| to clip at)"


def test_parse_is_what_the_cli_shows():
    seed = LIMITS["seed"]
    assert seed.parse(" 42 ") == 42
    with pytest.raises(LimitError, match=r"^'36893488147419103232' is not allowed; allowed: 0\.\.2,147,483,647"):
        seed.parse(str(2**65))
    with pytest.raises(LimitError, match=r"^'4\.5' is not an integer; allowed: 0\.\."):
        seed.parse("4.5")
    with pytest.raises(LimitError, match=r"^'fast' is not a number"):
        LIMITS["latency_budget_s"].parse("fast")


def test_the_timed_input_is_bounded_in_values_naming_both_settings():
    check_input_values(1024, 295)  # 267 million values, under 2**28
    assert 1024 * 3 * 296 * 296 > MAX_INPUT_VALUES == 2**28
    with pytest.raises(LimitError, match=r"batch_size=1024 at 296x296 .* e\.g\. batch size 1021 at 296 px"):
        check_input_values(1024, 296)
    with pytest.raises(ValueError, match="input values"):
        SweepConfig(batch_size=512, image_size=1024)


def test_sweep_config_reads_every_number_from_the_table():
    for name in ("batch_size", "calib_size", "eval_batch_size", "calib_batch_size", "seed"):
        with pytest.raises(ValueError, match=rf"^{name}=0 is not allowed|^{name}=-1 is not allowed"):
            SweepConfig(**{name: 0 if name != "seed" else -1})
    with pytest.raises(ValueError, match=r"eval_limit=0 is not allowed; allowed: 1\.\.1,000,000 .* or None \(all\)"):
        SweepConfig(eval_limit=0)
    assert SweepConfig(eval_limit=None, image_size=None, input_size=None).eval_limit is None
