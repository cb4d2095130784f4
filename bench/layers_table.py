"""Issue 15 figures, part 0: which supported settings lose the most top-1 on the cached baselines.

Prints a table model x setting -> top-1 change against FP32 in points, with its paired 95% interval
(:func:`qcore.layers.paired.paired_delta`), on the first ``--eval-limit`` test images (default: all 10,000).
Accuracy does not depend on machine load. Usage::

    QCORE_HOME=... python bench/layers_table.py --models resnet18,mobilenet_v3_small --out table.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from qcore.backends import quantize
from qcore.env.paths import atomic_write_bytes
from qcore.layers.paired import correct, paired_delta
from qcore.metrics.measure import predict
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep import SweepConfig, prepare


def _static(granularity: str, calibration: str) -> QuantSpec:
    return QuantSpec("int8", granularity=granularity, calibration=calibration, backend="fx")


_CALIBRATION_WORDS = {"minmax": "min-max", "percentile": "percentile", "entropy": "entropy", "mse": "MSE"}

SETTINGS = {
    **{f"INT8 static {g} {word}": _static(g, c) for g in ("per-tensor", "per-channel")
       for c, word in _CALIBRATION_WORDS.items()},
    "INT8 static per-tensor moving-average": _static("per-tensor", "moving-average"),
    "INT8 static per-tensor min-max symmetric": QuantSpec("int8", granularity="per-tensor", scheme="symmetric",
                                                          backend="fx"),
    "INT8 static per-tensor entropy symmetric": QuantSpec("int8", granularity="per-tensor", calibration="entropy",
                                                          scheme="symmetric", backend="fx"),
    "INT8 weight-only per-tensor": QuantSpec("int8", mode="weight-only", granularity="per-tensor"),
    "INT4 weight-only per-tensor min-max": QuantSpec("int4", mode="weight-only", granularity="per-tensor"),
    "INT4 weight-only per-channel min-max": QuantSpec("int4", mode="weight-only", granularity="per-channel"),
    "INT4 weight-only per-group(64) min-max": QuantSpec("int4", mode="weight-only", granularity="per-group"),
    "INT4 weight-only per-tensor MSE": QuantSpec("int4", mode="weight-only", granularity="per-tensor",
                                                 calibration="mse"),
    "INT4 weight-only per-channel MSE": QuantSpec("int4", mode="weight-only", granularity="per-channel",
                                                  calibration="mse"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v3_small")
    ap.add_argument("--eval-limit", type=int, default=None, help="images (default: all 10,000)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma list of: " + ", ".join(SETTINGS))
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    rows = []
    for model in args.models.split(","):
        config = SweepConfig(model=model, weights="baseline", eval_limit=args.eval_limit, fp32_compiled=False)
        p = prepare(config)
        ref = correct(p.ref_logits, p.labels)
        top1_fp32 = 100 * float(ref.mean())
        print(f"{model}: FP32 top-1 {top1_fp32:.2f}% on {ref.numel()} images", file=sys.stderr)
        for name in args.settings.split(","):
            t = time.perf_counter()
            q = quantize(p.loaded.model, SETTINGS[name], p.calib, p.example, p.device)
            logits, _ = predict(q, p.eval_batches, q.device)
            d = paired_delta(ref, correct(logits, p.labels))
            rows.append({"model": model, "setting": name, "spec": SETTINGS[name].to_dict(), "top1_fp32": top1_fp32,
                         "top1": top1_fp32 + d.delta, "delta": d.delta, "low": d.low, "high": d.high, "n": d.n,
                         "backend": q.backend, "kernel": q.kernel})
            print(f"{model:20s} {name:40s} {d.text():>16s} pts  (n={d.n}, {q.backend}/{q.kernel}, "
                  f"{time.perf_counter() - t:.0f} s)", flush=True)
    if args.out:
        atomic_write_bytes(args.out, json.dumps(rows, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
