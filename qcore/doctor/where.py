"""Where a point loses its accuracy: the few layers and activation quantizers whose "only this one in FP32" gain is
largest, read from the Layers measurement (:mod:`qcore.layers.sensitivity`), each with what it is in the network.

- :func:`find_layers_job`: the newest finished Layers job (kind ``"layers"``) that measured this spec on the same
  numbers: the same model, dataset, weights, device, image size, calibration images (size, seed, batches, list) and
  evaluation images; settings that change no top-1 (the latency budget, the timed batch and input size, the
  probe, FP32 compiled) are not compared.
- :func:`culprits`: the ``k`` rows with the largest positive ``gain_only_float`` (points won back with only that
  row in FP32). A job without accuracy columns has no gain: its rows are ranked by the SQNR of their own tensor
  instead (a layer's BatchNorm-folded weight, :data:`qcore.layers.row.DEFAULT_METRIC`; an activation quantizer's
  output), lowest first, and ``gain`` is None.
- A culprit's ``role``: for a layer, from its module: the first Conv the model calls is the ``first conv``, a
  Conv with ``groups == in_channels`` a ``depthwise conv``, a 1x1 one a ``pointwise conv``, the last Linear called
  the ``classifier``; for an activation quantizer, from the row's ``op``: ``model input``, ``residual add``,
  ``activation function (hardswish)``, ``multiply``, ``concatenation``, ``pooling``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from qcore.layers.row import DEFAULT_METRIC, LayerRow
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep_config import SweepConfig

__all__ = ["DEFINING", "Culprit", "find_layers_job", "culprits", "layer_roles", "activation_role"]

# The SweepConfig fields that define a Layers job's numbers (its top-1 and its rows): the others (latency budget,
# timed batch and input size, eval batch size, compiled FP32, the auto probe, calibration draws beyond the first,
# which the Layers job does not use) change no number of it.
DEFINING = ("model", "dataset", "weights", "device", "image_size", "calib_size", "eval_limit", "seed",
            "calib_batch_size", "calib_list")
_FUNCTIONS = {"relu", "relu6", "hardswish", "hardsigmoid", "silu", "gelu", "sigmoid", "tanh", "leakyrelu", "elu",
              "mish", "softmax"}
_POOLS = {"maxpool2d", "avgpool2d", "adaptiveavgpool2d", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d"}


@dataclass
class Culprit:
    """One place that costs accuracy: a layer or an activation quantizer (``kind``, as :class:`LayerRow`'s)."""

    name: str
    kind: str  # "layer" | "activation"
    role: str  # "first conv", "depthwise conv", ..., "residual add", "model input"
    gain: float | None  # points won back with only it in FP32 (None: not measured)
    metric: str  # what ranked it: "gain_only_float", "weight_sqnr_db" or "output_sqnr_db"
    row: LayerRow

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "role": self.role, "gain": self.gain, "metric": self.metric,
                "row": self.row.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Culprit:
        gain = d.get("gain")
        return cls(d["name"], d["kind"], d["role"], None if gain is None else float(gain), d["metric"],
                   LayerRow.from_dict(d["row"]))


def _canonical_spec(d: dict) -> dict:
    return QuantSpec.from_dict(d).to_dict()


def find_layers_job(store, config: SweepConfig, spec: QuantSpec, *, accuracy: bool = True) -> str | None:
    """The id of the newest finished (``done``) Layers job of ``store`` for ``spec`` on ``config``'s numbers (see
    the module), or None. With ``accuracy`` (the default) only jobs that measured the accuracy columns count.
    A job measured on every row is preferred to a newer one restricted to some rows (``only``)."""
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec={spec!r} is not allowed; allowed: a QuantSpec")
    want_cfg = {k: getattr(config, k) for k in DEFINING}
    want_spec = spec.to_dict()
    partial = None
    for job in store.jobs(limit=10_000, kind="layers"):  # newest first
        cfg = job.config or {}
        if job.state != "done" or (accuracy and not cfg.get("accuracy")):
            continue
        try:
            theirs = SweepConfig.from_dict(cfg["sweep"])
            their_spec = _canonical_spec(cfg["spec"])
        except (KeyError, TypeError, ValueError):  # a job stored by another version, or damaged: not this one
            continue
        if {k: getattr(theirs, k) for k in DEFINING} != want_cfg or their_spec != want_spec:
            continue
        if not cfg.get("only"):
            return job.job_id
        partial = partial or job.job_id
    return partial


def _call_order(model: nn.Module) -> list[str]:
    """The modules' names in the order the model calls them (a torch.fx trace, no input needed); the order they
    were registered in when the model cannot be traced."""
    import torch

    try:
        gm = torch.fx.symbolic_trace(model)
        return [str(n.target) for n in gm.graph.nodes if n.op == "call_module"]
    except Exception:  # data-dependent control flow: torchvision registers modules in call order anyway
        return [name for name, _ in model.named_modules() if name]


def _conv_role(m: nn.Module) -> str:
    if m.groups > 1 and m.groups == m.in_channels:
        return "depthwise conv"
    if all(k == 1 for k in m.kernel_size):
        return "pointwise conv"
    return "grouped conv" if m.groups > 1 else "conv"


def layer_roles(model: nn.Module) -> dict[str, str]:
    """Each Conv/Linear layer's role (see the module), by name."""
    modules = dict(model.named_modules())
    order = [n for n in dict.fromkeys(_call_order(model)) if isinstance(modules.get(n), (nn.Conv1d, nn.Conv2d,
                                                                                        nn.Conv3d, nn.Linear))]
    order += [n for n, m in modules.items() if n and n not in order
              and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    convs = [n for n in order if not isinstance(modules[n], nn.Linear)]
    linears = [n for n in order if isinstance(modules[n], nn.Linear)]
    roles = {}
    for n in order:
        m = modules[n]
        if isinstance(m, nn.Linear):
            roles[n] = "classifier" if n == linears[-1] else "linear"
        else:
            roles[n] = "first conv" if n == convs[0] else _conv_role(m)
    return roles


def _role_from_op(row: LayerRow, first: str | None, last_linear: str | None) -> str:
    """A layer's role from its row alone (no model): the op says ``Conv2d 3x3 depthwise 16->16``."""
    if row.layer == first:
        return "first conv"
    if row.op.startswith("Linear"):
        return "classifier" if row.layer == last_linear else "linear"
    if "depthwise" in row.op:
        return "depthwise conv"
    kernel = row.op.split()[1] if len(row.op.split()) > 1 else ""
    return "pointwise conv" if kernel and set(kernel.split("x")) == {"1"} else "conv"


def activation_role(row: LayerRow) -> str:
    """What an activation quantizer quantizes, in words, from its row's ``op`` (``add + ReLU``, ``Hardswish``)."""
    op = row.op.split(",")[0].strip()  # "MaxPool2d, sharing conv1's range"
    parts = [p.strip() for p in op.split("+") if p.strip()]
    head = parts[0].lower() if parts else ""
    if row.layer == "act:input" or head == "input":
        return "model input"
    if head in ("add", "iadd", "radd"):
        return "residual add"
    if head in ("mul", "imul", "rmul"):
        return "multiply"
    if head in ("cat", "concat"):
        return "concatenation"
    if head in _FUNCTIONS:
        return f"activation function ({head})"
    if head in _POOLS:
        return "pooling"
    return f"activation quantizer ({op})" if op else "activation quantizer"


def _sqnr_of(row: LayerRow) -> tuple[str, float | None]:
    if row.kind == "layer":
        return DEFAULT_METRIC, row.weight_sqnr_db
    return "output_sqnr_db", row.output_sqnr_db


def culprits(rows: list[LayerRow], model: nn.Module | None, k: int = 3) -> list[Culprit]:
    """The ``k`` places that cost most (see the module), most costly first; ``model`` (the FP32 model) gives the
    layers' roles, else each row's ``op`` does."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} is not allowed; allowed: an integer of at least 1")
    bad = [r for r in rows if not isinstance(r, LayerRow)]
    if bad:
        raise ValueError(f"rows hold {type(bad[0]).__name__}; allowed: LayerRow (qcore.layers.row)")
    if any(r.gain_only_float is not None for r in rows):
        ranked = sorted((r for r in rows if r.gain_only_float is not None and r.gain_only_float > 0),
                        key=lambda r: (-r.gain_only_float, r.position))
        metric_of = lambda r: "gain_only_float"  # noqa: E731
    else:
        scored = [(r, _sqnr_of(r)[1]) for r in rows]
        ranked = [r for r, v in sorted(((r, v) for r, v in scored if v is not None and math.isfinite(v)),
                                       key=lambda rv: (rv[1], rv[0].position))]
        metric_of = lambda r: _sqnr_of(r)[0]  # noqa: E731
    layers = sorted((r for r in rows if r.kind == "layer"), key=lambda r: r.position)
    roles = layer_roles(model) if model is not None else {}
    first = next((r.layer for r in layers if not r.op.startswith("Linear")), None)
    last_linear = next((r.layer for r in reversed(layers) if r.op.startswith("Linear")), None)
    out = []
    for r in ranked[:k]:
        if r.kind == "activation":
            role = activation_role(r)
        else:
            role = roles.get(r.layer) or _role_from_op(r, first, last_linear)
        out.append(Culprit(r.layer, r.kind, role, r.gain_only_float, metric_of(r), r))
    return out
