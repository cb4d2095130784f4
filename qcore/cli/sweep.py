"""``python -m qcore sweep``: quantize a model many ways and measure each.

Example::

    python -m qcore sweep --model resnet18 --dataset fashion-mnist \\
        --precision fp32,int8,int4 --granularity per-channel,per-group --calibration minmax,mse \\
        --mode static,weight-only --out results.csv

Comma lists make a grid (each flag's default is :data:`qcore.spec.DEFAULT_GRID`, which the app's Sweep page
starts from too); combinations that cannot exist are skipped with the reason.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from qcore.cli.data import dataset_help
from qcore.cli.progress import ProgressBar
from qcore.spec import CHOICES, DEFAULT_GRID, GROUP_SIZES, SpecError

__all__ = ["cmd_sweep", "add_subcommand"]


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


def cmd_sweep(args: argparse.Namespace) -> int:
    """``sweep``: measure the FP32 baseline and every valid spec of the grid; store, print, write files."""
    from qcore.backends import runnable_grid
    from qcore.report import text_table, write_csv, write_json
    from qcore.store import Store
    from qcore.sweep import SweepConfig, run_sweep

    try:
        config = SweepConfig(
            model=args.model, dataset=args.dataset, weights=args.weights, device=args.device,
            batch_size=args.batch_size, image_size=args.image_size, input_size=args.input_size,
            calib_size=args.calib_size,
            eval_limit=args.eval_limit, seed=args.seed, latency_budget_s=args.latency_budget,
        )  # fmt: skip
        specs, skipped = runnable_grid(
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
        bar = ProgressBar()
        try:
            results = run_sweep(config, specs, progress=bar, on_result=on_result, sweep_id=sweep_id)
        finally:
            bar.close()
    except (ValueError, FileNotFoundError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    if store:
        store.set_pareto({r.run_id: r.pareto for r in results})
    print(text_table(results))
    if args.out:
        write_csv(results, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if store:
        print(f"stored as sweep {sweep_id} in {store.path}", file=sys.stderr)
    return 0 if all(r.status in ("ok", "skipped") for r in results) else 1


def add_subcommand(subparsers) -> None:
    """Add ``sweep`` to an argparse subparsers object; its defaults come from SweepConfig and DEFAULT_GRID."""
    from qcore.sweep import SweepConfig

    d = SweepConfig()
    s = subparsers.add_parser("sweep", help="quantize a model many ways and measure each")
    s.add_argument("--model", default=d.model)
    s.add_argument("--dataset", default=d.dataset, help=dataset_help())
    s.add_argument("--weights", default=d.weights, help="auto, pretrained, baseline, or a checkpoint path")
    kinds = {"group_size": int, "percentile": float}
    helps = {"group_size": ",".join(map(str, GROUP_SIZES)), "percentile": "for percentile calibration"}
    for name, default in DEFAULT_GRID.items():  # one comma list per QuantSpec field
        s.add_argument(f"--{name.replace('_', '-')}", type=_list(kinds.get(name, str)), default=list(default),
                       help=helps.get(name) or ",".join(CHOICES[name]))
    s.add_argument("--device", default=d.device, choices=CHOICES["device"])
    s.add_argument("--batch-size", type=int, default=d.batch_size, help="latency batch size")
    s.add_argument("--image-size", type=int, default=d.image_size,
                   help="side the images are loaded and a baseline trained at (default: the dataset's, 32 for "
                        "Fashion-MNIST and CIFAR-10, 224 for folders)")
    s.add_argument("--input-size", type=int, default=d.input_size, help="latency input side (default: image size)")
    s.add_argument("--calib-size", type=int, default=d.calib_size)
    s.add_argument("--eval-limit", type=_optional_int, default=d.eval_limit, help="images to evaluate, or 'all'")
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--latency-budget", type=float, default=d.latency_budget_s,
                   help="seconds of timed runs per spec (at least 7 runs each)")
    s.add_argument("--out", help="write a CSV here")
    s.add_argument("--json", help="write a JSON file here")
    s.add_argument("--no-store", action="store_true", help="do not record the results in the run database")
    s.set_defaults(func=cmd_sweep)
