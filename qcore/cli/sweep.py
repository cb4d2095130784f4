"""``python -m qcore sweep``: quantize a model many ways and measure each.

Example::

    python -m qcore sweep --model resnet18 --dataset fashion-mnist \\
        --precision fp32,int8,int4 --granularity per-channel,per-group --calibration minmax,mse \\
        --mode static,weight-only --out results.csv

Comma lists make a grid (each flag's default is :data:`qcore.quant.spec.DEFAULT_GRID`, which the app's Sweep page
starts from too; ``--equalize off,on``, ``--bias-correction off,on`` and ``--rounding nearest,adaround`` compare the
post-training algorithms of :mod:`qcore.quant.spec_ptq`, off by default); combinations that cannot exist are skipped
with the reason. A sweep can also be a list of exact specs (``--spec 'INT8 per-tensor min-max static' --spec
'int4 weight-only per-group 64 mse'``, or ``--specs FILE`` with one per line, read by
:func:`qcore.quant.spec_text.parse_specs`): one job, FP32 measured once; grid options given as well add the grid's
specs to the list. Every number is checked against :data:`qcore.guards.limits.LIMITS` (a value out of range is a
usage error, exit status 2, naming the option). A stored sweep is a job in the run database from its start: rows
are committed as they are measured, and ``sweep --resume JOB`` measures what a killed or interrupted sweep left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from qcore.cli.budget import add_options as add_budget_options
from qcore.cli.budget import budget_of, decide
from qcore.cli.data import dataset_help
from qcore.cli.progress import ProgressBar
from qcore.guards.limits import LIMITS, LimitError, argparse_type
from qcore.quant.spec import CHOICES, DEFAULT_GRID, GROUP_SIZES, QAT_DEFAULTS, QuantSpec, SpecError
from qcore.quant.spec_ptq import PAPERS, PTQ_DEFAULTS
from qcore.quant.spec_text import parse_spec, parse_specs

__all__ = ["SWEEP_OPTIONS", "cmd_sweep", "add_subcommand", "grid_of"]

# The options that make a sweep; a resumed sweep takes them from the job instead.
SWEEP_OPTIONS = ("model", "dataset", "weights", *DEFAULT_GRID, "spec", "specs", "device", "batch_size", "image_size",
                 "input_size", "calib_size", "eval_limit", "seed", "latency_budget", *QAT_DEFAULTS, "calib_draws",
                 "calib_list", "auto_probe", *PTQ_DEFAULTS)  # fmt: skip


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


def _grid_option(name: str) -> tuple:
    """``(type, help)`` of the comma list for QuantSpec field ``name``."""
    if name == "group_size":
        return _list(int, choices=GROUP_SIZES), ",".join(map(str, GROUP_SIZES))
    if name == "percentile":
        return _list(limit="percentile"), f"for percentile calibration: {LIMITS['percentile'].allowed()}"
    return _list(choices=CHOICES[name]), ",".join(CHOICES[name])


def _qat_option(name: str):
    """A comma list for a QAT schedule field, each value checked by QuantSpec itself (epochs <= 0 is a usage
    error before anything runs)."""
    kind = int if name == "qat_seed" else float

    def parse(text: str):
        values = _list(kind, choices=None)(text)
        for v in values:
            try:
                QuantSpec("int8", mode="qat", **{name: v})
            except SpecError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return values

    return parse


def _ptq_option(name: str):
    """A comma list for a post-training algorithm's field (qcore.quant.spec_ptq): ``off,on`` for the flags, the
    roundings, or counts; each value checked by QuantSpec itself, so a bad one names what is allowed."""
    if name == "rounding":
        return _list(choices=CHOICES["rounding"])
    flag = isinstance(PTQ_DEFAULTS[name], bool)

    def parse(text: str):
        values = []
        for v in (v.strip() for v in text.split(",")):
            if not v:
                continue
            if flag and v.lower() not in ("off", "on"):
                raise argparse.ArgumentTypeError(f"{v!r} is not allowed; allowed: off, on")
            try:
                spec = QuantSpec("int8", rounding="nearest" if flag else "adaround", **{name: v})
            except SpecError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
            values.append(v.lower() if flag else getattr(spec, name))  # (off/on: QuantSpec reads them)
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r} holds no value; give at least one (comma-separated)")
        return list(dict.fromkeys(values))

    return parse


def grid_of(args: argparse.Namespace) -> dict:
    """The grid ``args`` ask for: each QuantSpec field's values (for :func:`qcore.backends.runnable_grid`)."""
    return {**{name: getattr(args, name) for name in (*DEFAULT_GRID, *QAT_DEFAULTS, *PTQ_DEFAULTS)},
            "device": [args.device]}


def cmd_sweep(args: argparse.Namespace) -> int:
    """``sweep``: measure the FP32 baseline and every valid spec of the grid; store, print, write files."""
    from qcore.backends import runnable_grid
    from qcore.runs.store import Store
    from qcore.runs.sweep import SweepConfig, run_sweep

    parser = args.parser
    budget_of(args)  # a budget that cannot be is a usage error before anything runs
    if args.cluster:
        from qcore.cluster import ClusterUnreachable, check_address, probe

        try:
            probe(check_address(args.cluster))  # seconds, before any job is recorded as running
        except ValueError as exc:
            parser.error(f"argument --cluster: {exc}")
        except ClusterUnreachable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
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
            calib_draws=args.calib_draws, auto_probe=args.auto_probe == "on",
            calib_list=os.path.abspath(args.calib_list) if args.calib_list else None,  # a resume may run elsewhere
        )  # fmt: skip
    except LimitError as exc:  # each number is in range (argparse checked it); their product is not
        parser.error(f"argument --batch-size/--input-size: {exc}")
    except ValueError as exc:  # --calib-list with --calib-draws above 1
        parser.error(f"argument --calib-draws/--calib-list: {exc}")
    try:
        listed = _listed_specs(args)
        specs, skipped = [], []
        grid_options = (*DEFAULT_GRID, *QAT_DEFAULTS, *PTQ_DEFAULTS)
        if not listed or any(getattr(args, name) != parser.get_default(name) for name in grid_options):
            specs, skipped = runnable_grid(**grid_of(args))
    except (ValueError, SpecError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    specs = list(dict.fromkeys([*specs, *listed]))  # the grid, then the list; each spec once
    reasons: dict[str, int] = {}
    for _, reason in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in reasons.items():
        print(f"skipped {n} combination(s): {reason}", file=sys.stderr)
    if not specs:
        print("error: no valid spec in this grid", file=sys.stderr)
        return 2
    measured = sum(not s.is_reference for s in specs)
    print(f"{measured} spec(s) + the FP32 baseline to measure", file=sys.stderr)
    if args.no_store:
        bar = ProgressBar()
        try:
            if args.cluster:
                from qcore.cluster.driver import run_cluster_sweep

                results = run_cluster_sweep(args.cluster, config, specs, progress=bar)
            else:
                results = run_sweep(config, specs, progress=bar)
        except (ValueError, FileNotFoundError, ConnectionError, ImportError) as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 2
        finally:
            bar.close()
        _write_outputs(results, args)
        return decide(results, args, 0 if all(r.status in ("ok", "skipped") for r in results) else 1)
    store = Store()
    # FP32 is the baseline, measured first in every sweep: the reference spec is not stored twice
    stored = [s for s in specs if not s.is_reference]
    job = store.start_job(config.to_dict(), [s.to_dict() for s in stored], os.getpid())
    print(f"sweep {job.job_id}; if it stops, 'python -m qcore sweep --resume {job.job_id}' measures the rest",
          file=sys.stderr)
    return _run_stored(store, job, args)


def _listed_specs(args) -> list[QuantSpec]:
    """The specs of ``--spec`` and ``--specs FILE``, in order; each must be one a backend can run (an explicit
    spec that cannot run is an error, not a skipped combination)."""
    from qcore.backends import kind_problem

    specs = [parse_spec(text, device=args.device) for text in args.spec or []]
    if args.specs:
        from pathlib import Path

        text = sys.stdin.read() if args.specs == "-" else Path(args.specs).read_text()
        specs += parse_specs(text, device=args.device)
    for spec in specs:
        if why := kind_problem(spec):
            raise SpecError(f"spec {spec.label()!r}: {why}")
    return specs


def _run_stored(store, job, args) -> int:
    """Run a job recorded in the store from this process: rows committed as measured, the CSV/JSON written
    before anything optional (the Pareto flags in the database), a Ctrl-C leaving a resumable job."""
    from qcore.env.space import NoSpace
    from qcore.runs.no_space import resume_hint
    from qcore.service.worker import execute_job, store_pareto

    bar = ProgressBar()
    resume = f"python -m qcore sweep --resume {job.job_id}"
    try:
        rows = execute_job(store, job, progress=bar, cluster=args.cluster)
    except KeyboardInterrupt:
        bar.close()
        store.update_job(job.job_id, state="interrupted", message=f"interrupted (Ctrl-C); {resume} measures the rest")
        print(f"\ninterrupted; every finished spec is stored: {resume} measures the rest", file=sys.stderr)
        return 130
    except NoSpace as exc:  # the rows so far are stored; the job resumes once space is freed
        bar.close()
        exc = exc if exc.hint else exc.with_hint(resume_hint(job.job_id))
        with contextlib.suppress(Exception):  # the database may have no room for this either
            store.update_job(job.job_id, state="interrupted", message=f"stopped: {exc}")
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        bar.close()
        store.update_job(job.job_id, state="error", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}",
                         message="failed")
        if not isinstance(exc, (ValueError, FileNotFoundError, ConnectionError, ImportError)):
            raise
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    bar.close()
    _write_outputs(rows, args)
    if problem := store_pareto(store, rows):
        print(f"warning: the Pareto flags were not stored in the run database ({problem}); the CSV/JSON and the "
              "table above have them", file=sys.stderr)
    cancelled = store.cancel_requested(job.job_id)
    store.update_job(job.job_id, state="cancelled" if cancelled else "done", finished_at=time.time(),
                     message="cancelled" if cancelled else "finished")
    print(f"stored as sweep {job.job_id} in {store.path}", file=sys.stderr)
    return decide(rows, args, 0 if all(r.status in ("ok", "skipped") for r in rows) else 1)


def _write_outputs(results, args) -> None:
    """The table, the FP32 row's notes (the data's skipped files, where the weights came from), CSV, JSON."""
    from qcore.metrics.result import baseline_of
    from qcore.present.report import text_table, write_csv, write_json

    print(text_table(results))
    base = baseline_of(results)
    for note in base.notes[1:] if base else []:
        print(f"note: {note}", file=sys.stderr)
    for path, writer in ((args.out, write_csv), (args.json, write_json)):
        if path:
            writer(results, path)
            print(f"wrote {path}", file=sys.stderr)


def add_subcommand(subparsers) -> None:
    """Add ``sweep`` to an argparse subparsers object; its defaults come from SweepConfig and DEFAULT_GRID, its
    ranges from :data:`qcore.guards.limits.LIMITS`."""
    from qcore.runs.sweep import SweepConfig

    d = SweepConfig()
    s = subparsers.add_parser("sweep", help="quantize a model many ways and measure each")
    s.add_argument("--model", default=d.model)
    s.add_argument("--dataset", default=d.dataset, help=dataset_help())
    s.add_argument("--weights", default=d.weights, help="auto, pretrained, baseline, or a checkpoint path")
    for name, default in DEFAULT_GRID.items():  # one comma list per QuantSpec field
        kind, help_ = _grid_option(name)
        s.add_argument(f"--{name.replace('_', '-')}", type=kind, default=list(default), help=help_)
    s.add_argument("--spec", action="append", metavar="LABEL",
                   help="one exact spec, in the words of its label: 'INT8 per-tensor min-max sym static', "
                        "'int4 weight-only per-group 64 mse', 'FP16', 'int8 static [pt2e]'; repeat it for more. "
                        "With --spec or --specs the sweep is that list (grid options given too add their grid)")
    s.add_argument("--specs", metavar="FILE", help="a file of specs, one per line (a label or a JSON object of "
                   "QuantSpec fields; '#' starts a comment), or a JSON list; '-' reads standard input")
    qat_help = {"qat_epochs": "passes over the training split (fractions allowed)",
                "qat_lr_scale": "times the baseline recipe's peak learning rate",
                "qat_freeze_bn": "fraction of the fine-tune after which BatchNorm statistics freeze (1: never)",
                "qat_freeze_observers": "fraction after which activation ranges freeze (1: never)",
                "qat_seed": "order of the training images"}
    for name, default in QAT_DEFAULTS.items():  # mode=qat only; comma lists join the grid
        s.add_argument(f"--{name.replace('_', '-')}", type=_qat_option(name), default=[default],
                       help=f"with --mode qat: {qat_help[name]} (default {default})")
    ptq_help = {  # post-training algorithms (qcore.quant.spec_ptq, qcore.ptq); integer precisions, not qat
        "equalize": "off,on: cross-layer equalization (+cle) before quantizing: layers joined by a ReLU rescaled so "
                    f"their per-channel weight ranges match; every backend ({PAPERS['equalize']})",
        "bias_correction": "off,on: bias correction (+bc): each layer's bias corrected by the mean shift its "
                           "quantized weights cause on the calibration images; backends fx, pt2e, weight-only "
                           f"({PAPERS['bias_correction']})",
        "rounding": "nearest,adaround: AdaRound learns per weight whether to round up or down, layer by layer on "
                    f"the calibration images (minutes on a CPU); backends fx, pt2e, weight-only ({PAPERS['rounding']})",
        "adaround_iters": "with --rounding adaround: optimizer steps per layer, 1 to 20,000",
        "adaround_images": "with --rounding adaround: calibration images each layer is fitted on, 32 to 10,000 "
                           "(at most --calib-size are there)",
    }
    for name, default in PTQ_DEFAULTS.items():  # comma lists join the grid
        shown = ("on" if default else "off") if isinstance(default, bool) else default
        s.add_argument(f"--{name.replace('_', '-')}", type=_ptq_option(name), default=[shown],
                       help=ptq_help[name])
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
    s.add_argument("--latency-budget", type=argparse_type("latency_budget_s"), default=d.latency_budget_s,
                   help=f"seconds of timed runs per spec (at least 7 runs each): "
                        f"{LIMITS['latency_budget_s'].allowed()}")
    _add_draw_options(s, d)
    s.add_argument("--auto-probe", choices=("on", "off"), default="on" if d.auto_probe else "off",
                   help="on: before the first INT8 spec run by --backend auto on a model, batch size and input size "
                        "this machine has not measured, build and time each INT8 backend that can run it (a few "
                        "seconds each, plus a first build of a compiled one) and keep the fastest in "
                        "auto-backends.json; off: qcore's default order at once")
    s.add_argument("--out", help="write a CSV here")
    s.add_argument("--json", help="write a JSON file here")
    s.add_argument("--no-store", action="store_true", help="do not record the results in the run database")
    s.add_argument("--cluster", metavar="ADDRESS", help="run the specs on this Ray cluster (auto, ray://HOST:PORT or "
                   "HOST:PORT; docs/cluster.md): accuracy on any node, latency one at a time per node")
    s.add_argument("--resume", metavar="JOB", help="measure what a stopped sweep left (its id, as printed at its "
                   "start or listed by 'runs --jobs'), with the settings stored with it")
    add_budget_options(s)
    s.set_defaults(func=cmd_sweep, parser=s)


def _add_draw_options(s, d) -> None:
    """``--calib-draws`` and ``--calib-list`` (qcore.metrics.draws, qcore.data.draws)."""
    s.add_argument("--calib-draws", type=argparse_type("calib_draws"), default=d.calib_draws, metavar="K",
                   help="calibrate each static INT spec K times on disjoint seeded samples of --calib-size training "
                        "images; rows hold the mean top-1 and its std, min and max (latency and size measured "
                        f"once; K times the calibration and evaluation cost): {LIMITS['calib_draws'].allowed()}")
    s.add_argument("--calib-list", metavar="FILE", default=d.calib_list,
                   help="calibrate on the images this file names, one training-split index (or, for an image "
                        "folder, file path) a line, as MLPerf publishes one; recorded in the manifest")
