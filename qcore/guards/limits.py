"""The ranges of every number a user sets: one table, read by the CLI, the app and :class:`SweepConfig`.

A value outside its range is refused before any work, with the same words everywhere: the name
(``--batch-size`` on the command line, ``batch_size=`` in Python, the field's label in the app),
the value and what is allowed. The CLI turns the refusal into a usage error (exit status 2, as
argparse does for its own checks); the app's number inputs take their min and max from here, so
they cannot be set out of range at all.

Why these ranges: a classifier's input needs no more than 1024 pixels a side; a timed batch is at
most 1024 images, and batch x 3 x side x side values (float32) at most :data:`MAX_INPUT_VALUES`
(1 GiB), because the FP32 model, its quantized copy and their activations all grow with it; seeds
fit the 31 bits every random generator involved takes; a timing budget of 0.1 s still gives the 7
timed calls the median needs, and 300 s per spec is a long sweep already.

>>> LIMITS["batch_size"].check(64)
64
>>> LIMITS["batch_size"].check(100000)
Traceback (most recent call last):
...
qcore.guards.limits.LimitError: batch_size=100000 is not allowed; allowed: 1..1024 (images per timed forward pass)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LimitError", "Limit", "LIMITS", "BY_OPTION", "argparse_type", "MAX_INPUT_VALUES", "check_input_values"]


class LimitError(ValueError):
    """A number outside its range; the message names it and what is allowed."""


@dataclass(frozen=True)
class Limit:
    """The allowed range of one number: ``lo..hi`` (``lo`` excluded when ``lo_open``), int or float."""

    name: str  # the field's name (SweepConfig, QuantSpec, Recipe)
    option: str  # the CLI option
    lo: float
    hi: float
    kind: type = int
    what: str = ""  # a few words saying what the number is
    lo_open: bool = False

    def allowed(self) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        span = f"more than {lo} up to {hi}" if self.lo_open else f"{lo}..{hi}"
        return f"{span} ({self.what})" if self.what else span

    def ok(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        return above and value <= self.hi

    def check(self, value, *, none: str | None = None):
        """``value`` when it is in range; None passes when ``none`` says what None means."""
        if value is None and none is not None:
            return None
        if not self.ok(value):
            also = f" or None ({none})" if none is not None else ""
            raise LimitError(f"{self.name}={value!r} is not allowed; allowed: {self.allowed()}{also}")
        return value

    def parse(self, text: str):
        """A command-line value: parsed as the limit's kind and checked; the message names the value only
        (the CLI puts the option's name in front, as argparse does)."""
        try:
            value = self.kind(text.strip())
        except (ValueError, OverflowError):
            kind = "an integer" if self.kind is int else "a number"
            raise LimitError(f"{text!r} is not {kind}; allowed: {self.allowed()}") from None
        if not self.ok(value):
            raise LimitError(f"{text!r} is not allowed; allowed: {self.allowed()}")
        return value


def _num(v: float) -> str:
    return f"{v:,.0f}" if v >= 10_000 and v == int(v) else f"{v:g}"


_TABLE = (
    Limit("batch_size", "--batch-size", 1, 1024, int, "images per timed forward pass"),
    Limit("image_size", "--image-size", 8, 1024, int, "pixels a side the images are loaded at"),
    Limit("input_size", "--input-size", 8, 1024, int, "pixels a side of the timed input"),
    Limit("calib_size", "--calib-size", 1, 60_000, int, "calibration images"),
    Limit("eval_limit", "--eval-limit", 1, 1_000_000, int, "evaluation images"),
    Limit("seed", "--seed", 0, 2**31 - 1, int, "a 31-bit seed"),
    Limit("latency_budget_s", "--latency-budget", 0.1, 300.0, float, "seconds of timing per spec"),
    Limit("eval_batch_size", "--eval-batch-size", 1, 1024, int, "images per evaluation batch"),
    Limit("calib_batch_size", "--calib-batch-size", 1, 1024, int, "images per calibration batch"),
    Limit("percentile", "--percentile", 50.0, 100.0, float, "percentile of |x| to clip at", lo_open=True),
    Limit("epochs", "--epochs", 0.01, 1000.0, float, "passes over the training split"),
    Limit("limit", "--limit", 1, 10_000_000, int, "rows"),
    Limit("idle_exit", "--idle-exit", 0.0, 7 * 24 * 3600.0, float, "seconds"),
    Limit("calib_draws", "--calib-draws", 1, 100, int, "calibration draws per quantized spec"),
)
LIMITS: dict[str, Limit] = {lim.name: lim for lim in _TABLE}
BY_OPTION: dict[str, Limit] = {lim.option: lim for lim in _TABLE}

def argparse_type(name: str, all_word: str | None = None):
    """The argparse ``type`` of the number ``name`` (``all_word``, e.g. ``"all"``, stands for None): a value out
    of range is argparse's own usage error (exit status 2) naming the option and its range."""
    import argparse

    def parse(text: str):
        if all_word is not None and text.strip().lower() in (all_word, "none"):
            return None
        try:
            return LIMITS[name].parse(text)
        except LimitError as exc:
            extra = f" or '{all_word}'" if all_word else ""
            raise argparse.ArgumentTypeError(f"{exc}{extra}") from None

    return parse


# batch x 3 x side x side float32 values of the timed input: 2**28 is 1 GiB (batch 1024 at 295 px, 85 at 1024).
MAX_INPUT_VALUES = 2**28


def check_input_values(batch_size: int, side: int) -> None:
    """Refuse a timed input of more than :data:`MAX_INPUT_VALUES` values, naming both settings."""
    values = batch_size * 3 * side * side
    if values > MAX_INPUT_VALUES:
        largest = max(1, MAX_INPUT_VALUES // (3 * side * side))
        raise LimitError(f"batch_size={batch_size} at {side}x{side} pixels is {values:,} input values (float32, "
                         f"{values * 4 / 2**30:.1f} GiB); allowed: at most {MAX_INPUT_VALUES:,} (1 GiB), e.g. batch "
                         f"size {largest} at {side} px (--batch-size, --input-size)")
