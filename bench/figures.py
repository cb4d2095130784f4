"""The engine's figures (issue 3), measured on this machine. Not a test: prints ratios and PASS/MISS.

    .venv/bin/python bench/figures.py                 # everything (~15 min on 2 cores)
    .venv/bin/python bench/figures.py --only speed    # one section: speed, size, accuracy, calib

Sections:
  speed     INT8 static per-channel vs FP32 eager, both torch backends (fx: torch.ao FX, x86; pt2e:
            torchao PT2E, Inductor with freezing), resnet18 and mobilenet_v2, 224x224, batch 1 and 32,
            FP32 and both INT8 models interleaved in one process, medians. Target >= 2.5x.
            (Latency does not depend on the weights' values; the models are random-init and
            calibrated on random images here. Accuracy is measured in the accuracy section.)
  size      serialized artifact / FP32: INT8 <= 0.26x, INT4 per-group(64) <= 0.14x.
  accuracy  Fashion-MNIST resnet18 baseline (trained by qcore, cached), all 10,000 test images:
            INT8 per-channel min-max loses <= 0.5 points with agreement >= 99%;
            INT4 per-group(64) MSE loses <= 1.5 points.
  calib     entropy and MSE calibration of resnet18 on 256 images take <= 3x min-max's time
            (observing plus solving the ranges; median of 3).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import warnings

import torch
import torchvision

from qcore.backends import quantize
from qcore.metrics.measure import size_bytes, time_interleaved
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep import SweepConfig, measure_spec, prepare

warnings.filterwarnings("ignore")
INT8 = QuantSpec("int8", granularity="per-channel", calibration="minmax")
INT4 = QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=64, calibration="mse")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def speed_and_size(sections: set[str], budget: float) -> None:
    for name in ("resnet18", "mobilenet_v2"):
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, num_classes=10).eval()
        g = torch.Generator().manual_seed(0)
        calib = [torch.randn(8, 3, 224, 224, generator=g) for _ in range(4)]
        q8 = quantize(model, INT8, calib, calib[0][:1])
        if "size" in sections:
            fp = size_bytes(model.state_dict())
            q4 = quantize(model, INT4, [], calib[0][:1])
            q4s = quantize(model, dataclasses.replace(INT4, scheme="symmetric"), [], calib[0][:1])
            r8, r4, r4s = (size_bytes(q.artifact) / fp for q in (q8, q4, q4s))
            print(f"size  {name:13s} INT8 {r8:.3f}x {verdict(r8 <= 0.26)}   INT4 pg64 {r4:.3f}x {verdict(r4 <= 0.14)}"
                  f"   (INT4 pg64 symmetric, no zero points: {r4s:.3f}x)")
        if "speed" not in sections:
            continue
        q8p = quantize(model, dataclasses.replace(INT8, backend="pt2e"), calib, calib[0][:1])
        for batch in (1, 32):
            x = torch.randn(batch, 3, 224, 224, generator=g)
            q8p(x)  # compile for this shape before timing
            lat = time_interleaved(
                {
                    "fp32": lambda m=model, x=x: m(x),
                    "fx": lambda q=q8, x=x: q(x),
                    "pt2e": lambda q=q8p, x=x: q(x),
                },
                min_runs=7,
                max_runs=300,
                budget_s=budget,
            )
            fp32 = lat["fp32"].p50
            best = max(fp32 / lat["fx"].p50, fp32 / lat["pt2e"].p50)
            print(
                f"speed {name:13s} batch {batch:2d}: FP32 {fp32:8.2f} ms  FX INT8 {lat['fx'].p50:8.2f} ms "
                f"({fp32 / lat['fx'].p50:.2f}x)  PT2E INT8 {lat['pt2e'].p50:8.2f} ms ({fp32 / lat['pt2e'].p50:.2f}x)"
                f"  ({len(lat['fp32'].samples_ms)} runs)  best {best:.2f}x {verdict(best >= 2.5)}"
            )


def accuracy(weights: str) -> None:
    config = SweepConfig(model="resnet18", dataset="fashion-mnist", weights=weights, eval_limit=None)
    p = prepare(config, progress=lambda d, t, m: print(f"  {m}", file=sys.stderr))
    from qcore.metrics.measure import accuracy as acc_of

    base = acc_of(p.ref_logits, p.labels)
    print(f"accuracy FP32 baseline ({p.loaded.weights}): top-1 {base.top1:.2f}% on {base.n} test images")
    for spec, limit in ((INT8, 0.5), (INT4, 1.5)):
        r = measure_spec(p, spec)
        ok = -r.top1_delta <= limit and (spec is not INT8 or r.agreement >= 99.0)
        print(
            f"accuracy {spec.label():45s} top-1 {r.top1:.2f}% ({r.top1_delta:+.2f} pts, limit -{limit}), "
            f"agreement {r.agreement:.2f}% {verdict(ok)}"
        )


def calib_time(weights: str) -> None:
    config = SweepConfig(model="resnet18", dataset="fashion-mnist", weights=weights, calib_size=256, eval_limit=10)
    p = prepare(config)
    times = {}
    for method in ("minmax", "entropy", "mse"):
        spec = QuantSpec("int8", calibration=method)
        times[method] = statistics.median(
            quantize(p.loaded.model, spec, p.calib, p.example).calib_seconds for _ in range(3)
        )
    for method in ("entropy", "mse"):
        ratio = times[method] / times["minmax"]
        print(
            f"calib {method:8s} {times[method]:.2f} s vs min-max {times['minmax']:.2f} s on 256 images: "
            f"{ratio:.2f}x {verdict(ratio <= 3.0)}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", choices=["speed", "size", "accuracy", "calib"])
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timing per (model, batch)")
    ap.add_argument("--weights", default="baseline", help="resnet18 weights for calib/accuracy (trained if missing)")
    args = ap.parse_args()
    sections = set(args.only or ["speed", "size", "accuracy", "calib"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if sections & {"speed", "size"}:
        speed_and_size(sections, args.budget)
    if "calib" in sections:
        calib_time(args.weights)
    if "accuracy" in sections:
        accuracy(args.weights)


if __name__ == "__main__":
    main()
