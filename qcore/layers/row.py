"""One layer's sensitivity row and the metrics a walk can rank by: plain data, no torch (the app's pages read
them from the run database)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["METRICS", "LayerRow"]

# metric -> (label, True when a larger value means a more sensitive layer): the walk's ranking reads this
METRICS: dict[str, tuple[str, bool]] = {
    "weight_sqnr_db": ("weight SQNR (dB)", False),
    "weight_rel_mse": ("weight relative MSE", True),
    "output_sqnr_db": ("output SQNR (dB)", False),
    "output_rel_mse": ("output relative MSE", True),
    "output_cosine": ("output cosine similarity", False),
    "gain_only_float": ("top-1 gained with only this layer in FP32 (points)", True),
    "loss_only_quant": ("top-1 lost with only this layer quantized (points)", True),
}


@dataclass
class LayerRow:
    """One layer's measurements (None where not measured: accuracy skipped)."""

    layer: str
    position: int
    kind: str
    params: int
    weight_sqnr_db: float
    weight_rel_mse: float
    output_sqnr_db: float | None = None
    output_rel_mse: float | None = None
    output_cosine: float | None = None
    top1_only_float: float | None = None
    agreement_only_float: float | None = None
    top1_only_quant: float | None = None
    agreement_only_quant: float | None = None
    gain_only_float: float | None = None  # top1_only_float - top-1 of the spec on every layer
    loss_only_quant: float | None = None  # FP32 top-1 - top1_only_quant
    eval_images: int = 0
    error_images: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LayerRow:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


