"""The CLI: ``python -m qcore sweep|train|worker|runs|models|datasets|fetch-data``.

Example::

    python -m qcore sweep --model resnet18 --dataset fashion-mnist \\
        --precision fp32,int8,int4 --granularity per-channel,per-group --calibration minmax,mse \\
        --mode static,weight-only --out results.csv

Comma lists make a grid; combinations that cannot exist are skipped with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .limits import LIMITS, LimitError, argparse_type
from .spec import CHOICES, GROUP_SIZES, SpecError, expand_grid

# The options that make a sweep; a resumed sweep takes them from the job instead.
SWEEP_OPTIONS = ("model", "dataset", "weights", "precision", "granularity", "group_size", "calibration", "percentile",
                 "scheme", "mode", "backend", "device", "batch_size", "image_size", "input_size", "calib_size",
                 "eval_limit", "seed", "latency_budget")  # fmt: skip


def _list(kind=str, choices=None, limit: str | None = None):
    """A comma list for a grid option; each value checked against ``choices`` or the ``limit`` of that name."""

    def parse(text: str):
        values = []
        for v in (v.strip() for v in text.split(",")):
            if not v:
                continue
            if limit is not None:
                try:
                    values.append(LIMITS[limit].parse(v))
                except LimitError as exc:
                    raise argparse.ArgumentTypeError(str(exc)) from None
                continue
            try:
                value = kind(v)
            except (ValueError, OverflowError):
                raise argparse.ArgumentTypeError(f"{v!r} is not {'an integer' if kind is int else 'valid'}; "
                                                 f"allowed: {', '.join(map(str, choices or ()))}") from None
            if choices is not None and value not in choices:
                raise argparse.ArgumentTypeError(f"{v!r} is not allowed; allowed: {', '.join(map(str, choices))}")
            values.append(value)
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r} holds no value; give at least one (comma-separated)")
        return values

    return parse




class ProgressBar:
    """A one-line progress bar with ETA on stderr."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream, self.start = stream, time.monotonic()

    def __call__(self, done: int, total: int, message: str) -> None:
        width = 28
        frac = done / total if total else 0.0
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        elapsed = time.monotonic() - self.start
        eta = f"ETA {elapsed / frac * (1 - frac):4.0f}s" if 0 < frac < 1 else f"{elapsed:5.0f}s"
        self.stream.write(f"\r[{bar}] {done}/{total} {eta} {message[:60]:<60}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def summary_table(results) -> str:
    cols = [("label", 44), ("backend", 11), ("kernel", 9), ("top1", 6), ("Δtop1", 6), ("agree", 6),
            ("p50 ms", 8), ("speedup", 7), ("size", 6), ("pareto", 6), ("status", 8)]  # fmt: skip
    lines = ["  ".join(f"{name:>{w}}" if i else f"{name:<{w}}" for i, (name, w) in enumerate(cols))]

    def num(v, fmt):
        return format(v, fmt) if v is not None else "-"

    for r in results:
        vals = [r.label[:44], r.backend or "-", r.kernel or "-", num(r.top1, ".2f"), num(r.top1_delta, "+.2f"),
                num(r.agreement, ".1f"), num(r.latency_ms_p50, ".2f"), num(r.speedup, ".2f"),
                num(r.size_ratio, ".3f"), "*" if r.pareto else "", r.status]  # fmt: skip
        lines.append("  ".join(f"{v:>{w}}" if i else f"{v:<{w}}" for i, (v, (_, w)) in enumerate(zip(vals, cols))))
    return "\n".join(lines)


def cmd_sweep(args) -> int:
    from .store import Store
    from .sweep import SweepConfig, run_sweep

    parser = args.parser
    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name in SWEEP_OPTIONS
                 if getattr(args, name) != parser.get_default(name)]  # fmt: skip
        if given or args.no_store:
            parser.error(f"argument --resume: the job's settings are stored with it; drop {', '.join(given)}"
                         if given else "argument --resume: --no-store cannot resume a stored sweep")
        store = Store()
        try:
            job = store.take_job(args.resume, os.getpid())
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        left = len(job.specs) + 1 - len(store.done_spec_keys(job.job_id))
        print(f"resuming sweep {job.job_id}: {left} of {len(job.specs) + 1} spec(s) left to measure", file=sys.stderr)
        return _run_stored(store, job, args)
    try:
        config = SweepConfig(
            model=args.model, dataset=args.dataset, weights=args.weights, device=args.device,
            batch_size=args.batch_size, image_size=args.image_size, input_size=args.input_size,
            calib_size=args.calib_size,
            eval_limit=args.eval_limit, seed=args.seed, latency_budget_s=args.latency_budget,
        )  # fmt: skip
    except LimitError as exc:
        parser.error(f"argument --batch-size/--input-size: {exc}")
    try:
        specs, skipped = expand_grid(
            precision=args.precision, granularity=args.granularity, group_size=args.group_size,
            calibration=args.calibration, percentile=args.percentile, scheme=args.scheme, mode=args.mode,
            backend=args.backend, device=[args.device],
        )  # fmt: skip
    except (ValueError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reasons: dict[str, int] = {}
    for _, reason in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in reasons.items():
        print(f"skipped {n} combination(s): {reason}", file=sys.stderr)
    if not specs:
        print("error: no valid spec in this grid", file=sys.stderr)
        return 2
    if args.no_store:
        try:
            results = run_sweep(config, specs, progress=ProgressBar())
        except (ValueError, FileNotFoundError) as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 2
        _write_outputs(results, args)
        return 0 if all(r.status in ("ok", "skipped") for r in results) else 1
    store = Store()
    # FP32 is the baseline, measured first in every sweep: a plain FP32 spec is not stored twice
    stored = [s for s in specs if not (s.precision == "fp32" and s.backend in ("auto", "float"))]
    job = store.start_job(config.to_dict(), [s.to_dict() for s in stored], os.getpid())
    print(f"sweep {job.job_id}; if it stops, 'python -m qcore sweep --resume {job.job_id}' measures the rest",
          file=sys.stderr)
    return _run_stored(store, job, args)


def _run_stored(store, job, args) -> int:
    """Run a job recorded in the store from this process: rows committed as measured, the CSV/JSON written
    before anything optional (the Pareto flags in the database), a Ctrl-C leaving a resumable job."""
    from .worker import execute_job, store_pareto

    bar = ProgressBar()
    resume = f"python -m qcore sweep --resume {job.job_id}"
    try:
        rows = execute_job(store, job, progress=bar)
    except KeyboardInterrupt:
        store.update_job(job.job_id, state="interrupted", message=f"interrupted (Ctrl-C); {resume} measures the rest")
        print(f"\ninterrupted; every finished spec is stored: {resume} measures the rest", file=sys.stderr)
        return 130
    except Exception as exc:
        store.update_job(job.job_id, state="error", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}",
                         message="failed")
        if not isinstance(exc, (ValueError, FileNotFoundError)):
            raise
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    _write_outputs(rows, args)
    if problem := store_pareto(store, rows):
        print(f"warning: the Pareto flags were not stored in the run database ({problem}); the CSV/JSON and the "
              "table above have them", file=sys.stderr)
    cancelled = store.cancel_requested(job.job_id)
    store.update_job(job.job_id, state="cancelled" if cancelled else "done", finished_at=time.time(),
                     message="cancelled" if cancelled else "finished")
    print(f"stored as sweep {job.job_id} in {store.path}", file=sys.stderr)
    return 0 if all(r.status in ("ok", "skipped") for r in rows) else 1


def _write_outputs(results, args) -> None:
    """The summary, the FP32 row's notes (the data's skipped files, where the weights came from), CSV, JSON."""
    from .report import write_csv, write_json

    print(summary_table(results))
    base = next((r for r in results if r.spec.precision == "fp32" and r.backend == "float"), None)
    for note in base.notes[1:] if base else []:
        print(f"note: {note}", file=sys.stderr)
    for path, writer in ((args.out, write_csv), (args.json, write_json)):
        if path:
            writer(results, path)
            print(f"wrote {path}", file=sys.stderr)


def cmd_worker(args) -> int:
    from .worker import serve

    return serve(idle_exit_s=args.idle_exit)


def cmd_runs(args) -> int:
    from .report import write_csv, write_html, write_json
    from .store import Store

    store = Store()
    if args.jobs:
        print(f"{'sweep id':<14} {'state':<12} {'done':>9}  {'started':<16} model on dataset")
        for job in store.jobs(limit=args.limit or 50):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
            print(f"{job.job_id:<14} {job.state:<12} {f'{job.done}/{job.total}':>9}  {when:<16} "
                  f"{job.config.get('model')} on {job.config.get('dataset')}")
        return 0
    results = store.results(sweep_id=args.sweep, limit=args.limit)
    print(summary_table(results))
    for path, writer in ((args.csv, write_csv), (args.json, write_json), (args.html, write_html)):
        if path:
            writer(results, path)
            print(f"wrote {path}", file=sys.stderr)
    print(f"{len(results)} result(s) in {store.path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .sweep import SweepConfig

    d = SweepConfig()
    parser = argparse.ArgumentParser(prog="python -m qcore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="quantize a model many ways and measure each")
    s.add_argument("--model", default=d.model)
    s.add_argument("--dataset", default=d.dataset, help="fashion-mnist, cifar10 or imagefolder:<path>")
    s.add_argument("--weights", default=d.weights, help="auto, pretrained, baseline, or a checkpoint path")
    for name, default in (("precision", ["fp32", "int8"]), ("granularity", ["per-channel"]),
                          ("calibration", ["minmax"]), ("scheme", ["asymmetric"]), ("mode", ["static"]),
                          ("backend", ["auto"])):  # fmt: skip
        s.add_argument(f"--{name}", type=_list(choices=CHOICES[name]), default=default,
                       help=",".join(CHOICES[name]))
    s.add_argument("--group-size", type=_list(int, choices=GROUP_SIZES), default=[64],
                   help=",".join(map(str, GROUP_SIZES)))
    s.add_argument("--percentile", type=_list(limit="percentile"), default=[99.99],
                   help=f"for percentile calibration: {LIMITS['percentile'].allowed()}")
    s.add_argument("--device", default=d.device, choices=CHOICES["device"])
    s.add_argument("--batch-size", type=argparse_type("batch_size"), default=d.batch_size,
                   help=f"latency batch size: {LIMITS['batch_size'].allowed()}")
    s.add_argument("--image-size", type=argparse_type("image_size"), default=d.image_size,
                   help="side the images are loaded and a baseline trained at (default: the dataset's, 32 for "
                        f"Fashion-MNIST and CIFAR-10, 224 for folders): {LIMITS['image_size'].allowed()}")
    s.add_argument("--input-size", type=argparse_type("input_size"), default=d.input_size,
                   help="latency input side (default: image size)")
    s.add_argument("--calib-size", type=argparse_type("calib_size"), default=d.calib_size,
                   help=LIMITS["calib_size"].allowed())
    s.add_argument("--eval-limit", type=argparse_type("eval_limit", "all"), default=d.eval_limit,
                   help=f"images to evaluate, or 'all': {LIMITS['eval_limit'].allowed()}")
    s.add_argument("--seed", type=argparse_type("seed"), default=d.seed, help=LIMITS["seed"].allowed())
    s.add_argument(
        "--latency-budget",
        type=argparse_type("latency_budget_s"),
        default=d.latency_budget_s,
        help=f"seconds of timed runs per spec (at least 7 runs each): {LIMITS['latency_budget_s'].allowed()}",
    )
    s.add_argument("--out", help="write a CSV here")
    s.add_argument("--json", help="write a JSON file here")
    s.add_argument("--no-store", action="store_true", help="do not record the results in the run database")
    s.add_argument("--resume", metavar="JOB", help="measure what a stopped sweep left (its id, as printed at its "
                   "start or listed by 'runs'), with the settings stored with it")
    s.set_defaults(func=cmd_sweep, parser=s)

    w = sub.add_parser("worker", help="run queued sweep jobs (the app starts this itself)")
    w.add_argument("--idle-exit", type=argparse_type("idle_exit"), default=600.0,
                   help="exit after this many idle seconds")
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("runs", help="list stored results; export CSV/JSON/HTML")
    r.add_argument("--sweep", help="only this sweep id")
    r.add_argument("--jobs", action="store_true", help="list sweeps (ids, state, progress) instead of results")
    r.add_argument("--limit", type=argparse_type("limit"), default=None, help="the newest N results")
    r.add_argument("--csv")
    r.add_argument("--json")
    r.add_argument("--html")
    r.set_defaults(func=cmd_runs)

    from . import cli_data

    cli_data.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
