"""Issue 24, item 5: which per-layer metric predicts the top-1 a layer buys back when it alone is kept in FP32.

For each model and setting (names from ``bench/layers_table.py``'s SETTINGS), on the cached Fashion-MNIST
baseline:

1. the per-layer table without accuracy columns (:func:`qcore.layers.sensitivity.measure_layers`): weight SQNR
   and relative MSE (on the BatchNorm-folded weights, as deployed; the unfolded weight SQNR beside it, as the
   table had it before), output SQNR, relative MSE and cosine on ``--error-images`` images;
2. the gain of each row with only it in FP32: a real build with ``keep_float=(row,)`` on the setting's backend
   against the setting on every layer, paired, on ``--eval-limit`` test images (accuracy does not depend on
   load);
3. Spearman's rank correlation (:func:`qcore.layers.spearman.spearman`, ties averaged) of each metric with that
   gain over the Conv/Linear layers, each metric oriented so that "more sensitive" is larger (SQNR and cosine
   negated): +1 means the metric orders the layers exactly as the gain does. Static INT8 settings also give the
   correlation over every row, activation quantizers included (output metrics; weight metrics have no value
   there).

    python bench/layers_spearman.py --eval-limit 2000 --out spearman.json
    python bench/layers_spearman.py --runs "resnet18:INT8 static per-tensor entropy" --eval-limit 2000
"""

from __future__ import annotations

import argparse
import json
import sys

from qcore.backends import quantize
from qcore.env.paths import atomic_write_bytes
from qcore.layers.errors import weight_error
from qcore.layers.paired import correct, paired_delta
from qcore.layers.row import METRICS
from qcore.layers.sensitivity import measure_layers
from qcore.layers.spearman import spearman
from qcore.metrics.measure import predict
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep import SweepConfig, prepare

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from layers_table import SETTINGS as TABLE_SETTINGS  # noqa: E402

# the table's settings, and two that lose accuracy on the resnet18 baseline (whose INT8 and INT4 min-max
# asymmetric settings lose none on 2,000 images)
SETTINGS = {**TABLE_SETTINGS,
            "INT4 weight-only per-tensor min-max symmetric": QuantSpec("int4", mode="weight-only",
                                                                       granularity="per-tensor", scheme="symmetric"),
            "INT4 weight-only per-tensor percentile(99)": QuantSpec("int4", mode="weight-only",
                                                                    granularity="per-tensor", calibration="percentile",
                                                                    percentile=99.0)}

RUNS = ("mobilenet_v3_small:INT4 weight-only per-tensor min-max",
        "mobilenet_v3_small:INT8 static per-tensor min-max",
        "mobilenet_v3_small:INT8 static per-tensor entropy",
        "resnet18:INT8 static per-tensor min-max",
        "resnet18:INT8 static per-tensor entropy",
        "resnet18:INT4 weight-only per-tensor min-max",
        "resnet18:INT4 weight-only per-tensor min-max symmetric",
        "resnet18:INT4 weight-only per-tensor percentile(99)")
PREDICTORS = ("weight_sqnr_db", "weight_rel_mse", "output_sqnr_db", "output_rel_mse", "output_cosine")


def oriented(metric: str, value: float | None) -> float | None:
    """``value`` with "more sensitive" larger (SQNR and cosine negated); None stays None."""
    if value is None:
        return None
    return value if METRICS[metric][1] else -value


def correlations(rows: list[dict], gain: str = "gain") -> dict[str, float | None]:
    """Spearman of each predictor (and the unfolded weight SQNR) with the gain over ``rows`` having both."""
    out = {}
    for m in (*PREDICTORS, "weight_sqnr_unfolded"):
        key = "weight_sqnr_db" if m == "weight_sqnr_unfolded" else m
        pairs = [(oriented(key, r[m]), r[gain]) for r in rows if r.get(m) is not None and r.get(gain) is not None]
        out[m] = spearman([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) >= 3 else None
    return out


def run(model: str, setting: str, eval_limit: int | None, error_images: int, act_gains: bool = True) -> dict:
    spec = SETTINGS[setting]
    config = SweepConfig(model=model, weights="baseline", eval_limit=eval_limit, fp32_compiled=False)
    sens = measure_layers(config, spec, accuracy_columns=False, error_images=error_images)
    p = prepare(config)
    modules = dict(p.loaded.model.named_modules())
    q0 = quantize(p.loaded.model, spec, p.calib, p.example, p.device)
    c0 = correct(predict(q0, p.eval_batches, q0.device)[0], p.labels)
    ref = correct(p.ref_logits, p.labels)
    start = paired_delta(ref, c0)
    print(f"{model} {setting}: all quantized {start.text()} pts on {c0.numel()} images ({q0.backend}); "
          f"{len(sens.rows)} rows", flush=True)
    rows = []
    for r in sens.rows:
        d = r.to_dict()
        d["weight_sqnr_unfolded"] = weight_error(modules[r.layer], spec).sqnr if r.kind == "layer" else None
        if not r.cannot_keep and (act_gains or r.kind == "layer"):
            q = quantize(p.loaded.model, spec.replace(keep_float=(r.layer,)), p.calib, p.example, p.device)
            g = paired_delta(c0, correct(predict(q, p.eval_batches, q.device)[0], p.labels))
            d.update(gain=g.delta, gain_low=g.low, gain_high=g.high)
            print(f"  {r.layer:40s} {r.kind:10s} gain {g.text()}", flush=True)
        rows.append(d)
    layers = [d for d in rows if d["kind"] == "layer"]
    out = {"model": model, "setting": setting, "spec": spec.to_dict(), "n": int(c0.numel()),
           "start_delta": start.delta, "start_low": start.low, "start_high": start.high, "backend": q0.backend,
           "rows": rows, "rho_layers": correlations(layers), "notes": sens.notes}
    if any(d["kind"] == "activation" for d in rows):
        out["rho_all"] = correlations(rows)
    return out


def _fmt(v) -> str:
    return "" if v is None else f"{v:+.2f}"


def best_places(rows: list[dict], metric: str, k: int = 3) -> list[int]:
    """Where each of the ``k`` rows with the largest gains stands in ``metric``'s ranking (1 = ranked first)."""
    key = "weight_sqnr_db" if metric == "weight_sqnr_unfolded" else metric
    valued = [d for d in rows if d.get(metric) is not None and d.get("gain") is not None]
    order = sorted(valued, key=lambda d: -oriented(key, d[metric]))
    place = {d["layer"]: i + 1 for i, d in enumerate(order)}
    return [place[d["layer"]] for d in sorted(valued, key=lambda d: -d["gain"])[:k]]


def table(results: list[dict]) -> str:
    head = ("| model, setting (all quantized) | rows | " + " | ".join(METRICS[m][0] for m in PREDICTORS)
            + " | weight SQNR unfolded |")
    lines = [head, "|" + "---|" * (len(PREDICTORS) + 3)]
    for r in results:
        act_gains = any(d["kind"] == "activation" and d.get("gain") is not None for d in r["rows"])
        for key, what in (("rho_layers", "layers"), ("rho_all", "layers + activations")):
            if key not in r or (key == "rho_all" and not act_gains):  # (--no-act-gains: the same as layers)
                continue
            n = sum(1 for d in r["rows"] if d.get("gain") is not None and (key == "rho_all" or d["kind"] == "layer"))
            rho = r[key]
            best = max((m for m in PREDICTORS if rho[m] is not None), key=lambda m: rho[m], default=None)
            cells = [f"**{_fmt(rho[m])}**" if m == best else _fmt(rho[m]) for m in PREDICTORS]
            lines.append(f"| {r['model']}, {r['setting']} ({r['start_delta']:+.2f}) | {n} {what} | "
                         + " | ".join(cells) + f" | {_fmt(rho['weight_sqnr_unfolded'])} |")
    return "\n".join(lines)


def places(results: list[dict]) -> str:
    """Per run, where the three layers with the largest gains stand in each metric's ranking."""
    lines = ["| model, setting | the 3 largest gains | " + " | ".join(METRICS[m][0] for m in PREDICTORS)
             + " | weight SQNR unfolded |", "|" + "---|" * (len(PREDICTORS) + 3)]
    for r in results:
        layers = [d for d in r["rows"] if d["kind"] == "layer"]
        top = sorted((d for d in layers if d.get("gain") is not None), key=lambda d: -d["gain"])[:3]
        names = ", ".join(f"{d['layer']} {d['gain']:+.2f}" for d in top)
        cells = [", ".join(map(str, best_places(layers, m))) for m in (*PREDICTORS, "weight_sqnr_unfolded")]
        lines.append(f"| {r['model']}, {r['setting']} | {names} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default=",".join(RUNS), help="comma list of model:setting")
    ap.add_argument("--eval-limit", type=int, default=2000, help="images for the gains (default 2000)")
    ap.add_argument("--error-images", type=int, default=256, help="images for the output errors")
    ap.add_argument("--no-act-gains", action="store_true",
                    help="measure the gain of the layers only (the activation rows keep their errors)")
    ap.add_argument("--out", help="write every row and correlation as JSON here")
    ap.add_argument("--tables", nargs="+", metavar="JSON", help="print the tables of earlier --out files (no run)")
    args = ap.parse_args(argv)
    if args.tables:
        import pathlib

        results = [r for f in args.tables for r in json.loads(pathlib.Path(f).read_text())]
        print(table(results), places(results), sep="\n\n")
        return 0
    results = []
    for item in args.runs.split(","):
        model, setting = item.split(":", 1)
        if setting not in SETTINGS:
            ap.error(f"setting {setting!r} is not known; allowed: {', '.join(SETTINGS)}")
        results.append(run(model, setting, args.eval_limit, args.error_images, not args.no_act_gains))
        print(table(results[-1:]), flush=True)
        if args.out:
            atomic_write_bytes(args.out, json.dumps(results, indent=1).encode())
    print(table(results), places(results), sep="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
