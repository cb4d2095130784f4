"""Issue 15 figures: Part 1's cost, the ranking's walk against seeded random walks, the first point within 0.5.

For one model and one setting (a name from ``bench/layers_table.py``'s SETTINGS), on the cached baseline:

1. per-layer sensitivity without and with the accuracy columns (``--ranking-images`` images): its seconds
   (Part 1's cost; wall-clock, so quote it only from a quiet machine);
2. the walk in the ranking's order (``--metric``) and in ``--seeds`` random orders: top-1 after 1, 2, 3 layers
   kept in FP32 (``--promote-to int8``: in INT8 weights, INT4 weight-only settings), as points recovered
   over the spec on every layer, with paired 95% intervals, on ``--eval-limit``
   test images (default all 10,000; accuracy does not depend on load);
3. the ranking's walk continued until top-1 is within ``--within`` points of FP32 (at most ``--max-steps``): how
   many layers it keeps, and that point measured like a sweep row (latency speed-up over FP32 and size ratio).

    QCORE_HOME=... python bench/layers_walks.py --model mobilenet_v3_small \\
        --setting "INT4 weight-only per-tensor min-max" --out walks.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from qcore.backends import quantize
from qcore.env.paths import atomic_write_bytes
from qcore.layers.paired import correct, paired_delta
from qcore.layers.sensitivity import METRICS, measure_layers
from qcore.layers.walk import PROMOTE_TO, candidates, check_promote, random_order, rank
from qcore.metrics.measure import predict
from qcore.runs.sweep import SweepConfig, measure_baseline, measure_spec, prepare

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from layers_table import SETTINGS  # noqa: E402


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--setting", default="INT4 weight-only per-tensor min-max", choices=list(SETTINGS))
    ap.add_argument("--eval-limit", type=int, default=None, help="images for the walks (default: all 10,000)")
    ap.add_argument("--ranking-images", type=int, default=1000, help="images for Part 1's accuracy columns")
    ap.add_argument("--metric", default="gain_only_float", choices=list(METRICS))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--within", type=float, default=0.5)
    ap.add_argument("--max-steps", type=int, default=12)
    ap.add_argument("--skip-cost", action="store_true", help="skip the timing of Part 1 without accuracy")
    ap.add_argument("--float-only", action="store_true",
                    help="with --metric gain_only_float: measure only that column (one build a layer, not two)")
    ap.add_argument("--promote-to", default="fp32", choices=list(PROMOTE_TO),
                    help="the walks keep layers in FP32, or (INT4 weight-only settings) in INT8 weights")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    spec = SETTINGS[args.setting]
    check_promote(spec, args.promote_to)
    field = PROMOTE_TO[args.promote_to]  # the ranking is Part 1's either way; the walks promote to this
    out: dict = {"model": args.model, "setting": args.setting, "metric": args.metric, "promote_to": args.promote_to}
    small = SweepConfig(model=args.model, weights="baseline", eval_limit=args.ranking_images, fp32_compiled=False)
    if not args.skip_cost:
        t = time.perf_counter()
        measure_layers(small, spec, accuracy_columns=False)
        out["part1_seconds_no_accuracy"] = time.perf_counter() - t
        print(f"Part 1 without accuracy: {out['part1_seconds_no_accuracy']:.0f} s ({_load()})", flush=True)
    needs_acc = args.metric in ("gain_only_float", "loss_only_quant") and not args.float_only
    t = time.perf_counter()
    sens = measure_layers(small, spec, accuracy_columns=needs_acc)
    if args.float_only:  # the ranking's one column: top-1 with only this layer in FP32, one build per layer
        sp = prepare(small)
        q0 = quantize(sp.loaded.model, spec, sp.calib, sp.example, sp.device)
        c0 = correct(predict(q0, sp.eval_batches, q0.device)[0], sp.labels)
        for r in (r for r in sens.rows if not r.cannot_keep):  # (the model input's quantizer cannot be kept)
            q = quantize(sp.loaded.model, spec.replace(keep_float=(r.layer,)), sp.calib, sp.example, sp.device)
            r.gain_only_float = paired_delta(c0, correct(predict(q, sp.eval_batches, q.device)[0], sp.labels)).delta
        gained = sorted((r for r in sens.rows if r.gain_only_float is not None), key=lambda r: -r.gain_only_float)
        print(f"gain with only this layer in FP32, {args.ranking_images} images: " + ", ".join(
            f"{r.layer} {r.gain_only_float:+.2f}" for r in gained[:8]), flush=True)
    out[f"part1_seconds_{'with' if needs_acc else 'no'}_accuracy"] = time.perf_counter() - t
    print(f"Part 1 ({'with' if needs_acc else 'no'} accuracy, {args.ranking_images} images): "
          f"{time.perf_counter() - t:.0f} s ({_load()}), {sens.plan.text()}", flush=True)
    out["rows"] = [r.to_dict() for r in sens.rows]
    names = candidates(sens.rows)  # layers, and under static INT8 the activation quantizers a spec can keep
    orders = {"ranking": rank(sens.rows, args.metric)}
    for s in args.seeds.split(","):
        orders[f"random seed {s}"] = random_order(names, int(s))
    print("ranking:", ", ".join(orders["ranking"][:6]), "...", flush=True)

    config = SweepConfig(model=args.model, weights="baseline", eval_limit=args.eval_limit, fp32_compiled=False)
    p = prepare(config)
    ref = correct(p.ref_logits, p.labels)
    n = ref.numel()
    cache: dict[tuple, torch.Tensor] = {}

    def top(keep: tuple) -> torch.Tensor:
        key = tuple(sorted(keep))
        if key not in cache:
            q = quantize(p.loaded.model, spec.replace(**{field: key}), p.calib, p.example, p.device)
            cache[key] = correct(predict(q, p.eval_batches, q.device)[0], p.labels)
        return cache[key]

    start = top(())
    base = paired_delta(ref, start)
    out.update(top1_fp32=100 * float(ref.mean()), start_delta=base.delta, start_low=base.low, start_high=base.high, n=n)
    print(f"{args.model} {args.setting}: FP32 {100 * float(ref.mean()):.2f}%, all quantized {base.text()} pts "
          f"(n={n})", flush=True)
    walks = {}
    for name, order in orders.items():
        walks[name] = []
        for k in (1, 2, 3):
            rec = paired_delta(start, top(tuple(order[:k])))
            walks[name].append({"k": k, "layers": order[:k], "recovered": rec.delta, "low": rec.low, "high": rec.high})
            print(f"  {name:16s} k={k}: recovered {rec.text()} pts  ({', '.join(order[:k])})", flush=True)
    out["walks"] = walks
    mean_rand = [sum(w[k]["recovered"] for n_, w in walks.items() if n_ != "ranking") / (len(walks) - 1)
                 for k in range(3)]
    out["random_mean"] = mean_rand
    print("random mean recovered at 1,2,3:", ", ".join(f"{v:+.2f}" for v in mean_rand), flush=True)

    order = orders["ranking"]
    first = None
    out["ranking_walk"] = []
    for k in range(0, min(args.max_steps, len(order) - 1) + 1):
        d = paired_delta(ref, top(tuple(order[:k])))
        out["ranking_walk"].append({"k": k, "delta": d.delta, "low": d.low, "high": d.high})
        print(f"  ranking walk   k={k}: {d.text()} pts against FP32", flush=True)
        if d.delta >= -args.within:
            first = k
            break
    out["first_within"] = first
    if first is None:
        print(f"no ranking point within {args.within} pts of FP32 in {args.max_steps} steps", flush=True)
    else:
        p.config = SweepConfig(model=args.model, weights="baseline", eval_limit=args.eval_limit,
                               fp32_compiled=False, latency_budget_s=4.0)
        measure_baseline(p)
        r = measure_spec(p, spec.replace(**{field: tuple(order[:first])}))
        out["first_point"] = {"layers": order[:first], "top1_delta": r.top1_delta, "speedup": r.speedup,
                              "size_ratio": r.size_ratio, "kernel": r.kernel}
        where = args.promote_to.upper()
        print(f"first point within {args.within} pts: {first} layer(s) in {where} ({', '.join(order[:first])}): "
              f"delta {r.top1_delta:+.2f} pts, speed-up {r.speedup:.2f}x over FP32 eager (kernel {r.kernel}; "
              f"{_load()}), size {r.size_ratio:.3f}x", flush=True)
    if args.out:
        atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
