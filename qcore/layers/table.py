"""The per-layer table as CSV: one row per layer or activation quantizer (``kind``), its name in ``layer``
(``act:...`` for a quantizer), what it is in ``op``, a column per metric, and the
context every number needs (model, spec, FP32's and the quantized spec's top-1 on the same images)."""

from __future__ import annotations

import csv
import io
from dataclasses import fields
from pathlib import Path

from qcore.env.paths import atomic_write_bytes
from qcore.layers.row import LayerRow

__all__ = ["LAYER_COLUMNS", "CONTEXT_COLUMNS", "layers_csv_text", "write_layers_csv", "text_table"]

LAYER_COLUMNS = tuple(f.name for f in fields(LayerRow))
CONTEXT_COLUMNS = ("model", "dataset", "spec", "top1_fp32", "top1_quantized")


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def layers_csv_text(rows: list[LayerRow], context: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*LAYER_COLUMNS, *CONTEXT_COLUMNS], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**{k: _fmt(v) for k, v in r.to_dict().items()},
                    **{k: _fmt(context.get(k)) for k in CONTEXT_COLUMNS}})
    return buf.getvalue()


def write_layers_csv(rows: list[LayerRow], context: dict, path: Path | str) -> None:
    """:func:`layers_csv_text` to ``path``, atomically (never a half-written file)."""
    atomic_write_bytes(Path(path), layers_csv_text(rows, context).encode())


def text_table(rows: list[LayerRow]) -> str:
    """Fixed-width: name, kind (layer or activation quantizer), op, weight and output SQNR, cosine, and the two
    accuracy columns when measured."""
    head = (f"{'layer':<28} {'kind':<10} {'op':<24} {'w SQNR':>7} {'out SQNR':>8} {'cos':>6} {'+FP32 only':>10} "
            f"{'-q only':>8}")
    lines = [head]
    for r in rows:
        vals = [_fmt(None if v is None else round(v, 2)) for v in
                (r.weight_sqnr_db, r.output_sqnr_db, r.output_cosine, r.gain_only_float, r.loss_only_quant)]
        lines.append(f"{r.layer[:28]:<28} {r.kind:<10} {r.op[:24]:<24} {vals[0]:>7} {vals[1]:>8} {vals[2]:>6} "
                     f"{vals[3]:>10} {vals[4]:>8}")
    return "\n".join(lines)
