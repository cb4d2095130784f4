"""``python -m qcore runs`` (stored results, exported) and ``python -m qcore worker`` (the job runner)."""

from __future__ import annotations

import argparse
import sys
import time

from qcore.cli.budget import add_options, budget_of, decide
from qcore.guards.limits import argparse_type

__all__ = ["cmd_runs", "cmd_worker", "add_subcommands"]


def cmd_worker(args: argparse.Namespace) -> int:
    """``worker``: run queued sweep jobs until idle (the app starts one itself)."""
    from qcore.service.worker import serve

    return serve(idle_exit_s=args.idle_exit)


def cmd_runs(args: argparse.Namespace) -> int:
    """``runs``: the stored results as a table, and as CSV / JSON / HTML files; ``--jobs``: the sweeps. With a
    budget (:mod:`qcore.cli.budget`), the point to ship among them; exit status 3 when none meets it."""
    from qcore.present.report import text_table, write_csv, write_html, write_json
    from qcore.runs.store import Store

    budget = budget_of(args)  # checked before anything is read
    if args.jobs and budget is not None:
        args.parser.error("argument --jobs: it lists sweeps; a budget (--sla-ms, --sla-speedup, --max-drop) judges "
                          "results: drop --jobs")
    store = Store()
    if args.jobs:
        print(f"{'sweep id':<14} {'state':<12} {'done':>9}  {'started':<16} model on dataset")
        for job in store.jobs(limit=args.limit or 50):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
            print(f"{job.job_id:<14} {job.state:<12} {f'{job.done}/{job.total}':>9}  {when:<16} "
                  f"{job.config.get('model')} on {job.config.get('dataset')}")
        return 0
    results = store.results(sweep_id=args.sweep, limit=args.limit)
    print(text_table(results))
    for path, writer in ((args.csv, write_csv), (args.json, write_json), (args.html, write_html)):
        if path:
            writer(results, path, **({"budget": budget} if writer is write_html and budget else {}))
            print(f"wrote {path}", file=sys.stderr)
    print(f"{len(results)} result(s) in {store.path}", file=sys.stderr)
    return decide(results, args, 0)


def add_subcommands(subparsers) -> None:
    """Add ``worker`` and ``runs`` to an argparse subparsers object."""
    w = subparsers.add_parser("worker", help="run queued sweep jobs (the app starts this itself)")
    w.add_argument("--idle-exit", type=argparse_type("idle_exit"), default=600.0,
                   help="exit after this many idle seconds")
    w.set_defaults(func=cmd_worker)

    r = subparsers.add_parser("runs", help="list stored results; export CSV/JSON/HTML")
    r.add_argument("--sweep", help="only this sweep id")
    r.add_argument("--jobs", action="store_true", help="list sweeps (ids, state, progress) instead of results")
    r.add_argument("--limit", type=argparse_type("limit"), default=None, help="the newest N results")
    r.add_argument("--csv")
    r.add_argument("--json")
    r.add_argument("--html", help="write the HTML report here (with a budget: the point to ship, the budget shaded)")
    add_options(r, over="the rows listed (--sweep: one sweep's)")
    r.set_defaults(func=cmd_runs, parser=r)
