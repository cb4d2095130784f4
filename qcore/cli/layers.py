"""``python -m qcore layers`` (per-layer sensitivity) and ``python -m qcore mixed`` (the mixed-precision walk).

Examples::

    python -m qcore layers --model mobilenet_v3_small --precision int4 --mode weight-only \\
        --granularity per-tensor --no-accuracy --out layers.csv
    python -m qcore mixed --model mobilenet_v3_small --precision int4 --mode weight-only \\
        --granularity per-tensor --steps 3 --order random --seed 1 --out walk.csv
    python -m qcore mixed --model mobilenet_v3_small --precision int4 --mode weight-only \\
        --granularity per-tensor --steps 3 --promote-to int8 --out walk-int8.csv

One spec (single values, not a grid). Both are jobs in the run database from their start: ``layers`` commits
each layer's row as measured, ``mixed`` each walk point (a sweep row, ``keep_float`` or ``keep_int8`` filled);
``--resume JOB`` measures what a stopped one left. Exit codes as ``sweep``'s: 0 done, 1 could not, 2 bad input,
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from qcore.cli.data import dataset_help
from qcore.cli.progress import ProgressBar
from qcore.guards.limits import LIMITS, argparse_type
from qcore.quant.spec import CHOICES, GROUP_SIZES, QuantSpec, SpecError
from qcore.quant.spec_ptq import PAPERS, PTQ_DEFAULTS

__all__ = ["add_subcommands", "cmd_layers", "cmd_mixed"]


def _spec(args) -> QuantSpec:
    return QuantSpec(args.precision, granularity=args.granularity, group_size=args.group_size,
                     calibration=args.calibration, percentile=args.percentile, scheme=args.scheme, mode=args.mode,
                     backend=args.backend, device=args.device, equalize=args.equalize == "on",
                     bias_correction=args.bias_correction == "on", rounding=args.rounding,
                     adaround_iters=args.adaround_iters, adaround_images=args.adaround_images)


def _config(args):
    from qcore.runs.sweep import SweepConfig

    return SweepConfig(model=args.model, dataset=args.dataset, weights=args.weights, device=args.device,
                       calib_size=args.calib_size, eval_limit=args.eval_limit, seed=args.seed,
                       latency_budget_s=args.latency_budget, fp32_compiled=False)


def _run(store, job, runner, what: str):
    """Run ``runner(store, job, bar)`` here; a Ctrl-C or an error leaves a resumable job, never half a file."""
    bar = ProgressBar()
    resume = f"python -m qcore {what} --resume {job.job_id}"
    try:
        result = runner(store, job, bar)
    except KeyboardInterrupt:
        bar.close()
        store.update_job(job.job_id, state="interrupted", message=f"interrupted (Ctrl-C); {resume} measures the rest")
        print(f"\ninterrupted; every finished row is stored: {resume} measures the rest", file=sys.stderr)
        return None, 130
    except (ValueError, FileNotFoundError) as exc:
        bar.close()
        store.update_job(job.job_id, state="error", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}",
                         message="failed")
        print(f"\nerror: {exc}", file=sys.stderr)
        return None, 2
    bar.close()
    store.update_job(job.job_id, state="done", finished_at=time.time(), message="finished",
                     **({"result": result} if result is not None else {}))
    return result, 0


def _start(args, kind: str, make_config):
    from qcore.runs.store import Store

    store = Store()
    if args.resume:
        try:
            job = store.take_job(args.resume, os.getpid())
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return store, None, 2
        if job.kind != kind:
            print(f"error: job {job.job_id} is a {job.kind} job, not {kind}", file=sys.stderr)
            return store, None, 2
        return store, job, 0
    try:
        config = make_config()
    except (ValueError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return store, None, 2
    job = store.start_job(config, [], os.getpid(), kind=kind)
    what = "layers" if kind == "layers" else "mixed"
    print(f"{kind} job {job.job_id}; if it stops, 'python -m qcore {what} --resume {job.job_id}' measures the rest",
          file=sys.stderr)
    return store, job, 0


def cmd_layers(args: argparse.Namespace) -> int:
    """``layers``: per-layer weight and output errors, and with ``--accuracy`` the two accuracy columns."""
    from qcore.layers.job import LAYERS_KIND, layers_config, run_layers_job
    from qcore.layers.rows import LayerRows
    from qcore.layers.table import text_table, write_layers_csv

    only = tuple(n.strip() for n in (args.layers or "").split(",") if n.strip())
    store, job, code = _start(args, LAYERS_KIND, lambda: layers_config(
        _config(args), _spec(args), accuracy=args.accuracy, error_images=args.error_images, only=only))
    if job is None:
        return code
    result, code = _run(store, job, run_layers_job, "layers")
    rows = LayerRows(store.path).rows(job.job_id)
    if code:
        return code
    print(text_table(rows))
    for r in rows:  # why a row has no "only this in FP32" figure (the model input's quantizer, an op run on int8)
        if r.cannot_keep:
            print(f"{r.layer}: not kept in FP32: {r.cannot_keep}", file=sys.stderr)
    if result.get("note"):
        print(f"notes: {result['note']}", file=sys.stderr)
    print(f"{result['plan']}; FP32 top-1 {result['top1_fp32']:.2f}%, quantized {result['top1_quantized']:.2f}% on "
          f"{result['eval_images']} images ({result['backend']})", file=sys.stderr)
    if args.out:
        spec = QuantSpec.from_dict(job.config["spec"])
        context = {"model": job.config["sweep"]["model"], "dataset": job.config["sweep"]["dataset"],
                   "spec": spec.label(), "top1_fp32": result["top1_fp32"], "top1_quantized": result["top1_quantized"]}
        write_layers_csv(rows, context, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_mixed(args: argparse.Namespace) -> int:
    """``mixed``: the walk, one measured point per layer kept in FP32 (or INT8 under INT4, ``--promote-to int8``)."""
    from qcore.layers.job import WALK_KIND, run_walk_job, walk_config
    from qcore.present.report import text_table, write_csv

    store, job, code = _start(args, WALK_KIND, lambda: walk_config(
        _config(args), _spec(args), order=args.order, metric=args.metric, seed=args.walk_seed, steps=args.steps,
        minutes=args.minutes, ranking_images=args.ranking_images, promote_to=args.promote_to))
    if job is None:
        return code
    result, code = _run(store, job, run_walk_job, "mixed")
    if code:
        return code
    rows = sorted(store.results(sweep_id=job.job_id), key=lambda r: r.created_at)
    print(text_table(rows))
    print(f"order: {', '.join(result['order'][:10])}{' ...' if len(result['order']) > 10 else ''}", file=sys.stderr)
    if args.out:
        write_csv(rows, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(r.status in ("ok", "skipped") for r in rows) else 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed: 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; allowed: 1 or more (a budget of 0 measures nothing)")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; allowed: above 0") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not allowed; allowed: a number of minutes above 0")
    return value


def _common(s: argparse.ArgumentParser) -> None:
    from qcore.runs.sweep import SweepConfig

    d, q = SweepConfig(), QuantSpec()
    s.add_argument("--model", default=d.model)
    s.add_argument("--dataset", default=d.dataset, help=dataset_help())
    s.add_argument("--weights", default=d.weights, help="auto, pretrained, baseline, or a checkpoint path")
    s.add_argument("--precision", default="int8", choices=("int8", "int4"))
    for name in ("granularity", "calibration", "scheme", "mode", "backend"):
        s.add_argument(f"--{name}", default=getattr(q, name), choices=CHOICES[name])
    s.add_argument("--group-size", type=int, default=q.group_size, choices=GROUP_SIZES)
    s.add_argument("--percentile", type=argparse_type("percentile"), default=q.percentile)
    s.add_argument("--equalize", default="off", choices=("off", "on"),
                   help=f"cross-layer equalization (+cle) before quantizing ({PAPERS['equalize']})")
    s.add_argument("--bias-correction", default="off", choices=("off", "on"),
                   help=f"bias correction (+bc) on the calibration images ({PAPERS['bias_correction']})")
    s.add_argument("--rounding", default=PTQ_DEFAULTS["rounding"], choices=CHOICES["rounding"],
                   help=f"adaround: each weight rounded up or down as learned per layer ({PAPERS['rounding']})")
    s.add_argument("--adaround-iters", type=int, default=PTQ_DEFAULTS["adaround_iters"],
                   help="AdaRound's steps per layer")
    s.add_argument("--adaround-images", type=int, default=PTQ_DEFAULTS["adaround_images"],
                   help="calibration images AdaRound fits each layer on")
    s.add_argument("--device", default=d.device, choices=CHOICES["device"])
    s.add_argument("--calib-size", type=argparse_type("calib_size"), default=d.calib_size,
                   help=LIMITS["calib_size"].allowed())
    s.add_argument("--eval-limit", type=argparse_type("eval_limit", "all"), default=d.eval_limit,
                   help=f"images to evaluate, or 'all': {LIMITS['eval_limit'].allowed()}")
    s.add_argument("--seed", type=argparse_type("seed"), default=d.seed, help="data seed: " + LIMITS["seed"].allowed())
    s.add_argument("--latency-budget", type=argparse_type("latency_budget_s"), default=d.latency_budget_s)
    s.add_argument("--out", help="write a CSV here")
    s.add_argument("--resume", metavar="JOB", help="measure what a stopped job left, with its stored settings")


def add_subcommands(subparsers) -> None:
    """Add ``layers`` and ``mixed``."""
    from qcore.layers.row import DEFAULT_METRIC
    from qcore.layers.sensitivity import METRICS
    from qcore.layers.walk import ORDERS, PROMOTE_TO

    s = subparsers.add_parser("layers", help="per-layer sensitivity of one quantized spec")
    _common(s)
    s.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True,
                   help="also top-1 with only each layer in FP32 / only each layer quantized (2 builds a layer)")
    s.add_argument("--error-images", type=_positive_int, default=256, help="images for the output errors")
    s.add_argument("--layers", help="comma list of layer names (or activation quantizers' act: names) to measure "
                   "(default: all)")
    s.set_defaults(func=cmd_layers, parser=s)

    m = subparsers.add_parser("mixed", help="mixed-precision walk: keep the most sensitive layers in FP32 (or INT8), "
                              "measured")
    _common(m)
    m.add_argument("--steps", type=_positive_int, default=3, help="layers to promote, one measured step each")
    m.add_argument("--promote-to", default="fp32", choices=list(PROMOTE_TO),
                   help="the precision promoted layers are kept in: fp32 (keep_float), or int8 (keep_int8: INT4 "
                        "weight-only specs only)")
    m.add_argument("--minutes", type=_positive_float, default=None, help="stop after this many minutes")
    m.add_argument("--order", default="sensitivity", choices=ORDERS)
    m.add_argument("--metric", default=DEFAULT_METRIC, choices=list(METRICS),
                   help=f"the ranking's metric (default {DEFAULT_METRIC}: the best predictor of the only-this-in-FP32 "
                        "gain measured, docs/benchmarks.md)")
    m.add_argument("--walk-seed", type=int, default=0, help="the random order's seed")
    m.add_argument("--ranking-images", type=_positive_int, default=1000, help="images for the ranking's accuracy")
    m.set_defaults(func=cmd_mixed, parser=m)
