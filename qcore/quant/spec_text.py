"""Specs from text: a label read back, or a list of specs typed or pasted (the Sweep page's spec list).

``parse_spec(QuantSpec(...).label()) == QuantSpec(...)``: labels are the one spelling the app, the CLI
tables and the reports show, so they are also what a user can type back.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from typing import Any

from qcore.quant.spec import CHOICES, LABELS, QuantSpec, SpecError, _allowed

__all__ = ["parse_spec", "parse_specs"]


def parse_spec(text: str, device: str = "auto") -> QuantSpec:
    """A spec from its :meth:`QuantSpec.label`, or from a shorter text in the same words, in any order and case.

        ``parse_spec("int4 per-group 64 mse weight-only")`` is ``QuantSpec("int4", granularity="per-group",
        group_size=64, calibration="mse", mode="weight-only")``. Words: a precision (``INT8``, ``fp16``), a
        granularity (``per-group(64)`` or ``per-group 64``), a calibration (``min-max`` or ``minmax``,
        ``percentile(99.9)``, ``entropy (KL)``, ...), ``sym``/``asym``, a mode, a backend in brackets
        (``[fx]``), the post-training algorithms (``+cle``, ``+bc``, ``adaround`` or ``adaround(500 it)``), or
        ``field=value`` for any field (``group_size=32``, ``backend=ort``). What is not said
        takes :class:`QuantSpec`'s default; a precision must be said. A word that is none of these raises
        :class:`SpecError` naming it and what is allowed."""
    return QuantSpec(**_parse_words(text, device))


def parse_specs(text: str, device: str = "auto") -> list[QuantSpec]:
    """Specs from a text of one spec per line (a label, :func:`parse_spec`'s words, or a JSON object of
    :meth:`QuantSpec.to_dict`'s fields), or a JSON list of such labels and objects. Blank lines and lines
    starting with ``#`` are skipped; a line that is not a spec raises :class:`SpecError` naming its number
    and its text. Duplicates are kept (the caller decides)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SpecError(f"the spec list is not valid JSON: {exc}") from None
        entries = list(enumerate(items if isinstance(items, list) else [items], 1))
    else:
        entries = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        entries = [(n, line) for n, line in entries if line and not line.startswith("#")]
    specs = []
    for n, entry in entries:
        try:
            if isinstance(entry, str) and entry.startswith("{"):
                entry = json.loads(entry)
            if isinstance(entry, dict):
                specs.append(QuantSpec.from_dict({"device": device, **entry}))
            elif isinstance(entry, str):
                specs.append(parse_spec(entry, device=device))
            else:
                raise SpecError(f"expected a label or a JSON object, not {type(entry).__name__}")
        except (SpecError, TypeError, json.JSONDecodeError) as exc:
            raise SpecError(f"spec {n} ({str(entry)[:80]!r}): {exc}") from None
    return specs


# -- reading a label back (parse_spec) ---------------------------------------------------------------

# the post-training algorithms' words (qcore.quant.spec_ptq.ptq_label) as field=value words
_PTQ_WORDS = ((re.compile(r"\badaround\((\d+) it, (\d+) img\)"),
               r"rounding=adaround adaround_iters=\1 adaround_images=\2"),
              (re.compile(r"\badaround\((\d+) it\)"), r"rounding=adaround adaround_iters=\1"),
              (re.compile(r"(?<![\w=])adaround(?![\w(])"), "rounding=adaround"),
              (re.compile(r"(?<![\w=])nearest(?![\w(])"), "rounding=nearest"),
              (re.compile(r"(?<!\S)\+cle(?!\S)"), "equalize=on"),
              (re.compile(r"(?<!\S)\+bc(?!\S)"), "bias_correction=on"))


def _ptq_words(norm: str) -> str:
    for pattern, words in _PTQ_WORDS:
        norm = pattern.sub(words, norm)
    return norm


_SCHEMES = {"sym": "symmetric", "symmetric": "symmetric", "asym": "asymmetric", "asymmetric": "asymmetric"}
_WORD = re.compile(r"^([a-z0-9_-]+)(?:\(([^()]*)\))?$")


def _words() -> dict[str, tuple[str, str]]:
    """Each word a label may hold -> (field, value): the choices, and their LABELS written as one word."""
    words = {v: (name, v) for name in ("precision", "granularity", "calibration", "mode") for v in CHOICES[name]}
    words.update({k: ("scheme", v) for k, v in _SCHEMES.items()})
    for key, label in LABELS.items():
        field_name = "precision" if key in CHOICES["precision"] else "calibration"
        words[_one_word(label)] = (field_name, key)
    return words


def _one_word(label: str) -> str:
    """``entropy (KL)`` -> ``entropy``, ``moving-average min-max`` -> ``moving-average``, ``min-max`` ->
    ``minmax``: the label as the one word that names its value."""
    return {v: k for k, v in LABELS.items()}.get(label, label).lower()


def _numeric_fields() -> dict[str, type]:
    """QuantSpec's number fields and their types (group_size and qat_seed int, percentile and qat_* float)."""
    kinds = {"int": int, "float": float}
    return {f.name: kinds[f.type] for f in fields(QuantSpec) if f.type in kinds}


def _number(name: str, text: str, field_name: str):
    kind = _numeric_fields().get(field_name, float)
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SpecError(f"{name}: {text!r} is not {what} ({field_name})") from None


def _parse_words(text: str, device: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise SpecError("an empty spec; write a precision at least, e.g. 'INT8 per-channel min-max static'")
    norm = text.strip().lower()
    for key, label in sorted(LABELS.items(), key=lambda kv: -len(kv[1])):  # multi-word labels become one word
        if " " in label or "(" in label:
            norm = norm.replace(label.lower(), key)
    norm = norm.replace("min-max", "minmax")
    norm = re.sub(r"\bqat\(([^()\s]+) ep\)", r"qat qat_epochs=\1", norm)  # QAT's label: "qat(0.5 ep)"
    norm = _ptq_words(norm)
    words, names = _words(), {f.name for f in fields(QuantSpec)}
    out: dict[str, Any] = {"device": device}
    last_number_field = None

    def put(name: str, value: Any, word: str) -> None:
        if name in out and name != "device" and out[name] != value:
            raise SpecError(f"{name} is given twice ({out[name]!r} and {word!r}) in {text!r}")
        out[name] = value

    for word in norm.split():
        if word.startswith("[") and word.endswith("]"):
            put("backend", word[1:-1], word)
            continue
        if "=" in word:
            name, _, value = word.partition("=")
            name = name.replace("-", "_")
            if name not in names:
                raise SpecError(f"{name!r} in {text!r} is not a QuantSpec field; allowed: {_allowed(sorted(names))}")
            put(name, _number(name, value, name) if name in _numeric_fields() else value, word)
            continue
        if word.replace(".", "", 1).isdigit() and last_number_field:
            put(last_number_field, _number(last_number_field, word, last_number_field), word)
            last_number_field = None
            continue
        m = _WORD.match(word)
        if not m or m.group(1) not in words:
            raise SpecError(
                f"{word!r} in {text!r} is not a precision, granularity, calibration, scheme or mode; allowed: "
                f"{_allowed(sorted(words))}, [backend] (one of {_allowed(CHOICES['backend'])}) or field=value")
        name, value = words[m.group(1)]
        put(name, value, word)
        number_field = {"per-group": "group_size", "percentile": "percentile"}.get(value)
        if m.group(2) is not None:
            if number_field is None:
                raise SpecError(f"{word!r} in {text!r}: only per-group(N) and percentile(P) take a number")
            put(number_field, _number(word, m.group(2), number_field), word)
        last_number_field = number_field if m.group(2) is None else None
    if "precision" not in out:
        raise SpecError(f"{text!r} names no precision; allowed: {_allowed(CHOICES['precision'])}")
    return out
