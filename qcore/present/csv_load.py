"""A results CSV read back into Results: this version's and every older one's.

This version writes times as ISO 8601 UTC, leaves a setting that does not apply empty and separates lists by ``;``
(:mod:`qcore.metrics.columns`); older versions wrote seconds since the epoch, ``0`` for a group size or percentile that
does not apply, calibration seeds separated by spaces, and fewer columns. Both read to the same Results, so
``csv_text(read_csv(old))`` is the file as this version writes it. Columns a file lacks take their defaults, and
columns this version does not know are ignored.

A CSV is a table, not the whole record: the spec's backend comes back from its label (``INT8 ... [fx]``; ``auto``
when the label names none), its device is ``auto``, and what only the JSON holds (the latency samples, the
manifest, a QAT curve, each draw's images lost and gained) is empty.
"""

from __future__ import annotations

import csv
import io
import re
import types
import typing
from pathlib import Path

from qcore.metrics.columns import NA_VALUES, NAMES, applies, parse_time
from qcore.metrics.result import TIME_FIELDS, Result
from qcore.quant.spec import CHOICES, QuantSpec

__all__ = ["REQUIRED", "CsvRowError", "read_csv", "csv_results", "parse_cell", "missing_columns"]

# The columns every qcore results CSV has had, old and new: a file without one of them is not a results CSV.
REQUIRED = ("run_id", "model", "dataset", "precision", "status", "created_at")

_SPEC_ONLY = ("granularity", "group_size", "calibration", "percentile", "scheme", "mode", "keep_float", "keep_int8",
              "qat_epochs", "equalize", "bias_correction", "rounding", "adaround_iters", "adaround_images")  # fmt: skip
_INTEGER = re.compile(r"[+-]?\d+")


def _base(hint) -> tuple[type, bool]:
    """``(type, is_list)`` of a field's annotation: ``float | None`` is float, ``list[int]`` int and a list."""
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None)), False
    return hint, False


def parse_cell(text: str, hint):
    """One cell as the Python value of a field annotated ``hint``; None for an empty one (an empty list for a
    list). A float field keeps an integer written without a point an int (``images_lost`` 3 stays 3).

    >>> parse_cell("4 5 6", list[int]), parse_cell("4;5;6", list[int]), parse_cell("91.5;90", list[float])
    ([4, 5, 6], [4, 5, 6], [91.5, 90])
    >>> parse_cell("", float | None), parse_cell("true", bool), parse_cell("3", float | None)
    (None, True, 3)
    """
    kind, many = _base(hint)
    if many:
        return [parse_cell(t, kind) for t in re.split(r"[;\s]+", text.strip()) if t]
    if text == "":
        return "" if kind is str else None
    if kind is bool:
        return text.strip().lower() in ("true", "1", "yes")
    if kind is int:
        return int(float(text)) if not _INTEGER.fullmatch(text.strip()) else int(text)
    if kind is float:
        return int(text) if _INTEGER.fullmatch(text.strip()) else float(text)
    return text


class CsvRowError(ValueError):
    """A row that is not a results row: its number (1 is the first row under the header), the line of the file
    it starts on, the column whose cell cannot be read (None: the row as a whole) and the problem."""

    def __init__(self, row: int, line: int, column: str | None, problem: str) -> None:
        self.row, self.line, self.column, self.problem = row, line, column, problem
        where = f"row {row} (line {line})" + (f", column {column}" if column else "")
        super().__init__(f"{where} of the CSV is not a results row: {problem}")


class _BadCell(ValueError):
    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column = column


def missing_columns(header) -> list[str]:
    """The :data:`REQUIRED` columns a CSV header lacks, in that order."""
    return [name for name in REQUIRED if name not in header]


def _spec(row: dict[str, str], hints: dict) -> QuantSpec:
    """The spec of a CSV row: its settings (an empty or old placeholder cell: the default, normalised), the
    backend its label names."""
    d = {}
    for name in ("precision", *_SPEC_ONLY):
        text = row.get(name, "")
        if text not in ("", "n/a"):
            try:
                value = parse_cell(text, hints[name])
            except ValueError as exc:
                raise _BadCell(name, str(exc)) from None
            d[name] = tuple(text.split(";")) if name.startswith("keep_") else value
    named = re.findall(r"\[([\w-]+)\]", row.get("label", ""))
    if named and named[-1] in CHOICES["backend"]:
        d["backend"] = named[-1]
    return QuantSpec(**d)  # an older file's 0 for a group size or percentile that does not apply: normalised


def csv_results(text: str) -> list[Result]:
    """The Results of a results CSV's text, in its order (this version's form or an older one's). Raises
    ValueError when the header lacks a :data:`REQUIRED` column, :class:`CsvRowError` for a row that cannot be read
    (a cell that is not of its column's type, a row of more or fewer cells than the header)."""
    result_hints = typing.get_type_hints(Result)
    spec_hints = typing.get_type_hints(QuantSpec)
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames and (missing := missing_columns(reader.fieldnames)):
        raise ValueError(f"the CSV lacks the column(s) {', '.join(missing)}; a qcore results CSV has "
                         f"{', '.join(REQUIRED)}")
    out, line = [], reader.line_num + 1
    for number, row in enumerate(reader, start=1):
        name = None
        try:
            if None in row or None in row.values():
                cells = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or ())
                raise ValueError(f"it has {cells} cells, the header {len(reader.fieldnames)}")
            d = {}
            for name, cell in row.items():
                if name in TIME_FIELDS:
                    d[name] = parse_time(cell)
                elif name == "notes":
                    d[name] = cell.split(" | ") if cell else []
                elif name in result_hints and name not in ("spec", "manifest", "qat_curve", "latency_samples_ms"):
                    d[name] = parse_cell(cell or "", result_hints[name])
                    if name in NAMES and not applies(name, row) and d[name] in NA_VALUES:
                        d[name] = None  # an older file's 0 where it does not apply (FP32's calib_seconds)
            name = None
            # an empty cell of a field that is never None (created_at, calib_draws, pareto, ...): its default
            d = {k: v for k, v in d.items() if v is not None or type(None) in typing.get_args(result_hints[k])}
            out.append(Result(spec=_spec(row, spec_hints), **d))
        except _BadCell as exc:
            raise CsvRowError(number, line, exc.column, str(exc)) from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise CsvRowError(number, line, name, str(exc)) from None
        line = reader.line_num + 1
    return out


def read_csv(path: Path | str) -> list[Result]:
    """The Results of the results CSV at ``path`` (:func:`csv_results`)."""
    return csv_results(Path(path).read_text(encoding="utf-8"))
