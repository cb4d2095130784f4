"""The CLI: ``python -m qcore sweep|train|worker|runs|models|datasets|fetch-data``.

Example::

    python -m qcore sweep --model resnet18 --dataset fashion-mnist \\
        --precision fp32,int8,int4 --granularity per-channel,per-group --calibration minmax,mse \\
        --mode static,weight-only --out results.csv

Comma lists make a grid; combinations that cannot exist are skipped with the reason.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from .spec import CHOICES, GROUP_SIZES, SpecError, expand_grid


def _list(kind=str):
    def parse(text: str):
        try:
            return [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc

    return parse


def _optional_int(text: str) -> int | None:
    if text.lower() in ("all", "none", ""):
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive integer or 'all'")
    return value


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
    from .report import write_csv, write_json
    from .store import Store
    from .sweep import SweepConfig, run_sweep

    try:
        config = SweepConfig(
            model=args.model, dataset=args.dataset, weights=args.weights, device=args.device,
            batch_size=args.batch_size, image_size=args.image_size, input_size=args.input_size,
            calib_size=args.calib_size,
            eval_limit=args.eval_limit, seed=args.seed, latency_budget_s=args.latency_budget,
        )  # fmt: skip
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
    store = None if args.no_store else Store()
    sweep_id = "cli-" + uuid.uuid4().hex[:8]
    on_result = store.add_result if store else None
    try:
        results = run_sweep(config, specs, progress=ProgressBar(), on_result=on_result, sweep_id=sweep_id)
    except (ValueError, FileNotFoundError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    if store:
        store.set_pareto({r.run_id: r.pareto for r in results})
    print(summary_table(results))
    if args.out:
        write_csv(results, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if store:
        print(f"stored as sweep {sweep_id} in {store.path}", file=sys.stderr)
    return 0 if all(r.status in ("ok", "skipped") for r in results) else 1


def cmd_worker(args) -> int:
    from .worker import serve

    return serve(idle_exit_s=args.idle_exit)


def cmd_runs(args) -> int:
    from .report import write_csv, write_html, write_json
    from .store import Store

    store = Store()
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
    s.add_argument("--precision", type=_list(), default=["fp32", "int8"], help=",".join(CHOICES["precision"]))
    s.add_argument("--granularity", type=_list(), default=["per-channel"], help=",".join(CHOICES["granularity"]))
    s.add_argument("--group-size", type=_list(int), default=[64], help=",".join(map(str, GROUP_SIZES)))
    s.add_argument("--calibration", type=_list(), default=["minmax"], help=",".join(CHOICES["calibration"]))
    s.add_argument("--percentile", type=_list(float), default=[99.99], help="for percentile calibration")
    s.add_argument("--scheme", type=_list(), default=["asymmetric"], help=",".join(CHOICES["scheme"]))
    s.add_argument("--mode", type=_list(), default=["static"], help=",".join(CHOICES["mode"]))
    s.add_argument("--backend", type=_list(), default=["auto"], help=",".join(CHOICES["backend"]))
    s.add_argument("--device", default=d.device, choices=CHOICES["device"])
    s.add_argument("--batch-size", type=int, default=d.batch_size, help="latency batch size")
    s.add_argument("--image-size", type=int, default=d.image_size,
                   help="side the images are loaded and a baseline trained at (default: the dataset's, 32 for "
                        "Fashion-MNIST and CIFAR-10, 224 for folders)")
    s.add_argument("--input-size", type=int, default=d.input_size, help="latency input side (default: image size)")
    s.add_argument("--calib-size", type=int, default=d.calib_size)
    s.add_argument("--eval-limit", type=_optional_int, default=d.eval_limit, help="images to evaluate, or 'all'")
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument(
        "--latency-budget",
        type=float,
        default=d.latency_budget_s,
        help="seconds of timed runs per spec (at least 7 runs each)",
    )
    s.add_argument("--out", help="write a CSV here")
    s.add_argument("--json", help="write a JSON file here")
    s.add_argument("--no-store", action="store_true", help="do not record the results in the run database")
    s.set_defaults(func=cmd_sweep)

    w = sub.add_parser("worker", help="run queued sweep jobs (the app starts this itself)")
    w.add_argument("--idle-exit", type=float, default=600.0, help="exit after this many idle seconds")
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("runs", help="list stored results; export CSV/JSON/HTML")
    r.add_argument("--sweep", help="only this sweep id")
    r.add_argument("--limit", type=int, default=None)
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
