"""One row of the per-layer table and the metrics a walk can rank by: plain data, no torch (the app's pages read
them from the run database).

A row is a Conv/Linear layer (``kind="layer"``, named as torchvision names the module: ``features.0.0``) or an
activation quantizer the backend inserts between layers (``kind="activation"``, named ``act:...``, see
:mod:`qcore.backends.act_quantizers`): the model input, a residual addition, an activation function's output.
``op`` says what it is (``Conv2d 3x3 3->16``, ``add + ReLU``). An activation row has no weight columns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["METRICS", "DEFAULT_METRIC", "ROW_KINDS", "LayerRow"]

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
# The walk's default ranking (CLI and app): of the metrics measured without accuracy builds, the one whose Spearman
# correlation with the only-this-layer-in-FP32 gain was highest on average over both baselines (docs/benchmarks.md,
# "Issue 24, item 5", bench/layers_spearman.py): the weight SQNR of the BatchNorm-folded weight (weight relative MSE
# orders the layers the same way). It is weak (mean rho about +0.1) but the output metrics are negative on resnet18
# (they grow with depth, as each carries every error before it), and it is the one that ranks mobilenet_v3_small's
# INT4 culprit features.0.0 (+2.15 points alone in FP32) 4th of 54, where output SQNR ranks it 33rd.
DEFAULT_METRIC = "weight_sqnr_db"

ROW_KINDS = ("layer", "activation")


@dataclass
class LayerRow:
    """One layer's (or activation quantizer's) measurements (None where not measured: accuracy skipped, or no
    weight)."""

    layer: str
    position: int
    op: str
    params: int
    weight_sqnr_db: float | None
    weight_rel_mse: float | None
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
    kind: str = "layer"  # ROW_KINDS
    cannot_keep: str = ""  # why no spec can keep this one in FP32 (the model input's quantizer): no walk promotes it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LayerRow:
        """A stored row; rows stored before activation rows existed held the description in ``kind``."""
        d = dict(d)
        if d.get("kind") not in ROW_KINDS and "op" not in d:
            d["op"], d["kind"] = d.get("kind", ""), "layer"
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})
