"""Issue 25's figures: what cross-layer equalization, bias correction and AdaRound win back without training.

For each model, one sweep (FP32, then each setting plain and with the algorithms) on the trained Fashion-MNIST
baseline: top-1, its change against FP32 with the paired 95% interval, the share of the plain setting's loss each
algorithm recovers ``(top1 - plain) / (fp32 - plain)``, and the algorithms' seconds (``ptq_algorithm_seconds``;
on a shared machine they say what it cost there, under the load printed beside them).

    python bench/ptq.py --models mobilenet_v3_small --eval-limit 2000 --adaround-iters 100
    python bench/ptq.py --eval-limit 0 --json ptq.json      # all 10,000 test images, every model

Groups: ``int8-pt`` (INT8 static per-tensor min-max on fx: plain, +CLE, +CLE+BC) for the depthwise networks and
``int4`` (INT4 weight-only per-tensor and per-channel min-max: nearest, AdaRound, AdaRound+BC).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcore.env.paths import atomic_write_bytes  # noqa: E402
from qcore.quant.spec import FP32, QuantSpec  # noqa: E402
from qcore.runs.sweep import SweepConfig, run_sweep  # noqa: E402

GROUPS = {"mobilenet_v2": ("int8-pt",), "mobilenet_v3_small": ("int8-pt", "int4"), "resnet18": ("int4",)}


def specs_of(group: str, iters: int) -> list[tuple[QuantSpec, QuantSpec | None]]:
    """``(spec, the plain spec it is compared with)``; the plain ones have None."""
    out = []
    if group == "int8-pt":
        plain = QuantSpec("int8", granularity="per-tensor", mode="static", backend="fx")
        out += [(plain, None), (plain.replace(equalize=True), plain),
                (plain.replace(equalize=True, bias_correction=True), plain)]
    else:
        for g in ("per-tensor", "per-channel"):
            plain = QuantSpec("int4", granularity=g, mode="weight-only")
            ada = plain.replace(rounding="adaround", adaround_iters=iters)
            out += [(plain, None), (ada, plain), (ada.replace(bias_correction=True), plain)]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    ap.add_argument("--eval-limit", type=int, default=2000, help="test images (0: all 10,000)")
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--adaround-iters", type=int, default=500)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args(argv)
    models = a.models.split(",")
    unknown = [m for m in models if m not in GROUPS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; allowed: {', '.join(GROUPS)}")
    os.environ.setdefault("QCORE_AUTO_PROBE", "off")  # the backends are named; nothing to probe
    out = {}
    for model in models:
        pairs = [p for g in GROUPS[model] for p in specs_of(g, a.adaround_iters)]
        config = SweepConfig(model=model, weights="baseline", calib_size=a.calib_size, eval_limit=a.eval_limit or None,
                             latency_budget_s=0.5, fp32_compiled=False)
        start = time.perf_counter()
        rows = run_sweep(config, [FP32] + [s for s, _ in pairs],
                         progress=lambda d, t, m: print(f"[{d:.2f}/{t}] {m}", file=sys.stderr, flush=True))
        by_spec = {r.spec: r for r in rows}
        base = rows[0]
        took = time.perf_counter() - start
        print(f"\n{model}: FP32 {base.top1:.2f}% on {base.eval_images} test images; sweep {took:.0f} s, load average "
              f"{os.getloadavg()[0]:.1f}")
        print("| setting | top-1 | change [95%] | recovered | algorithms s |")
        print("| --- | --- | --- | --- | --- |")
        out[model] = {"fp32_top1": base.top1, "eval_images": base.eval_images, "rows": []}
        for spec, plain in pairs:
            r = by_spec.get(spec.replace(backend=spec.backend))
            if r is None or r.status != "ok":
                print(f"| {spec.label()} | {getattr(r, 'status', 'missing')}: {getattr(r, 'error', '')[:80]} | | | |")
                continue
            rec = ""
            p = by_spec.get(plain) if plain else None
            if p is not None and p.top1 is not None and base.top1 - p.top1 > 0:
                rec = f"{(r.top1 - p.top1) / (base.top1 - p.top1):.2f}"
            secs = f"{r.ptq_algorithm_seconds:.0f}" if r.ptq_algorithm_seconds is not None else ""
            print(f"| {r.label} | {r.top1:.2f} | {r.top1_delta:+.2f} [{r.top1_delta_lo:+.2f}, {r.top1_delta_hi:+.2f}] "
                  f"| {rec} | {secs} |", flush=True)
            out[model]["rows"].append({"label": r.label, "top1": r.top1, "delta": r.top1_delta,
                                       "delta_lo": r.top1_delta_lo, "delta_hi": r.top1_delta_hi, "recovered": rec,
                                       "ptq_algorithm_seconds": r.ptq_algorithm_seconds, "notes": r.notes})
        if a.json:
            atomic_write_bytes(a.json, json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
