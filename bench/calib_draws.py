"""How much of a PTQ point is the luck of its calibration images (issue 17). Accuracy only: load-independent.

    .venv/bin/python bench/calib_draws.py                      # both baselines, 10 draws of 256, all 10,000 images
    .venv/bin/python bench/calib_draws.py --eval-limit 2000 --models resnet18 --out draws.json

For each Fashion-MNIST baseline (trained by qcore and cached: ``--weights baseline``) and each setting
below, the spec is calibrated on ``--draws`` disjoint seeded samples of ``--calib-size`` training images
(qcore.data.draws: draw k seeded ``--seed + k``, the draws a ``sweep --calib-draws`` makes) and each draw is
evaluated on the same test images. Prints each setting's mean, sample std and min-max range of top-1, then
which pairs are distinguishable: their min-max ranges do not overlap (:func:`qcore.metrics.draws.overlaps`, the rule
of the Pareto chart's hover). Settings:

  INT8 static per-tensor min-max, per-channel min-max, per-tensor entropy, per-channel entropy (torch.ao FX,
  x86 kernels; asymmetric activations), and INT4 weight-only per-group(64) MSE (simulated kernel: accuracy
  is exact, the arithmetic is float). Weight-only ranges come from the weights, so its draws must agree to
  the last image: the bench measures that rather than assuming it.

``--out FILE`` writes every draw's top-1 as JSON, updated after each setting, so a long run that is
stopped keeps what it measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's qcore, run from anywhere

from qcore.backends import resolve  # noqa: E402
from qcore.env.paths import atomic_write_bytes
from qcore.metrics.draws import overlaps, summarize_draws
from qcore.metrics.measure import accuracy
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep import SweepConfig, draw_accuracies, prepare

warnings.filterwarnings("ignore")

SETTINGS = {
    "INT8 per-tensor min-max": QuantSpec("int8", granularity="per-tensor", calibration="minmax", backend="fx"),
    "INT8 per-channel min-max": QuantSpec("int8", granularity="per-channel", calibration="minmax", backend="fx"),
    "INT8 per-tensor entropy": QuantSpec("int8", granularity="per-tensor", calibration="entropy", backend="fx"),
    "INT8 per-channel entropy": QuantSpec("int8", granularity="per-channel", calibration="entropy", backend="fx"),
    "INT4 w-only per-group(64) MSE": QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=64,
                                               calibration="mse"),
}


def _row(name: str, model: str, top1: list[float]) -> Result:
    """A Result holding one setting's draws, so the chart's overlap rule (qcore.metrics.draws) applies as is."""
    r = Result(spec=SETTINGS[name], model=model, dataset="fashion-mnist", run_id=f"{model}:{name}")
    r.top1, r.calib_draws = sum(top1) / len(top1), len(top1)
    r.top1_min, r.top1_max = min(top1), max(top1)
    return r


def _build(backend, p, spec, calib):
    return backend.quantize(p.loaded.model, spec, calib, p.example, "cpu")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v3_small")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma list of: " + ", ".join(SETTINGS))
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--eval-limit", default="all", help="test images to evaluate on, or 'all' (10,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", default="baseline")
    ap.add_argument("--out", help="write every draw's top-1 here (JSON)")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of saved --out files")
    args = ap.parse_args(argv)
    if args.table:
        saved = [json.loads(Path(f).read_text()) for f in args.table]
        for extra in saved[1:]:  # one table from runs split by model or setting (same draws and images)
            for model, m in extra["models"].items():
                saved[0]["models"].setdefault(model, {**m, "settings": {}})["settings"].update(m["settings"])
        print(markdown(saved[0]))
        return 0
    eval_limit = None if args.eval_limit == "all" else int(args.eval_limit)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; allowed: {', '.join(SETTINGS)}")
    out: dict = {"draws": args.draws, "calib_size": args.calib_size, "eval_limit": args.eval_limit,
                 "seed": args.seed, "models": {}}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        config = SweepConfig(model=model, weights=args.weights, device="cpu", calib_size=args.calib_size,
                             calib_draws=args.draws, eval_limit=eval_limit, seed=args.seed, fp32_compiled=False)
        p = prepare(config)
        fp32_top1 = accuracy(p.ref_logits, p.labels).top1
        n_eval = int(p.labels.numel())
        print(f"\n{model}: FP32 top-1 {fp32_top1:.2f} % on {n_eval} test images; {args.draws} draws of "
              f"{args.calib_size} training images (seeds {args.seed} to {args.seed + args.draws - 1})", flush=True)
        rows = out["models"].setdefault(model, {"fp32_top1": fp32_top1, "eval_images": n_eval, "settings": {}})
        for name in names:
            spec = SETTINGS[name]
            start = time.perf_counter()
            backend = resolve(spec, "cpu").backend
            accs = draw_accuracies(p, partial(_build, backend, p, spec), spec)
            mean, spread = summarize_draws(accs)
            rows["settings"][name] = {"top1": spread["draws_top1"], "mean": mean.top1, "std": spread["top1_std"],
                                      "min": spread["top1_min"], "max": spread["top1_max"],
                                      "agreement": [a.agreement for a in accs], "backend": backend.name}
            print(f"  {name:32s} mean {mean.top1:6.2f}  std {spread['top1_std'] or 0:.3f}  range "
                  f"{spread['top1_min']:.2f}-{spread['top1_max']:.2f} ({spread['top1_max'] - spread['top1_min']:.2f} "
                  f"points)  [{time.perf_counter() - start:.0f} s]", flush=True)
            if args.out:
                atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
        del p
    print(markdown(out))
    return 0


def markdown(out: dict) -> str:
    """The table and the distinguishable pairs, as docs/benchmarks.md shows them."""
    lines = ["| model | setting | draws | mean top-1 | std | min | max | range (points) |",
             "|---|---|---|---|---|---|---|---|"]
    pairs = []
    for model, m in out["models"].items():
        for name, s in m["settings"].items():
            lines.append(f"| {model} | {name} | {len(s['top1'])} | {s['mean']:.2f} | {s['std'] or 0:.3f} | "
                         f"{s['min']:.2f} | {s['max']:.2f} | {s['max'] - s['min']:.2f} |")
        rows = {n: _row(n, model, s["top1"]) for n, s in m["settings"].items()}
        for a, b in itertools.combinations(rows, 2):
            same = overlaps(rows[a], rows[b])
            k = min(rows[a].calib_draws, rows[b].calib_draws)
            pairs.append(f"- {model}: {a} vs {b}: {'NOT distinguishable' if same else 'distinguishable'} "
                         f"with {k} draws (means {rows[a].top1:.2f} and {rows[b].top1:.2f})")
    return "\n".join(lines + [""] + pairs)


if __name__ == "__main__":
    sys.exit(main())
