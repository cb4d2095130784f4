"""``python -m qcore doctor RUN_ID``: why a stored point lost accuracy or speed, and the fixes in the order to try
them; ``--try N`` measures suggestion N as a move from that point (in the point's own sweep job, or a new sweep when
the fix changes the sweep's settings) and prints what it changed and what it bought."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from qcore.cli.progress import ProgressBar

__all__ = ["cmd_doctor", "add_subcommands"]


def _diagnosis(store, args):
    """The diagnosis to show: a new one, or with ``--try`` and no new one asked for, the newest stored."""
    from qcore.doctor.diagnose import Diagnosis, diagnose
    from qcore.doctor.job import DOCTOR_KIND, doctor_config, latest_doctor_job

    if args.try_n is not None and not args.again:
        job = latest_doctor_job(store, args.run_id)
        if job is not None and job.state == "done" and job.result:
            return Diagnosis.from_dict(job.result)
    job = store.start_job(doctor_config(args.run_id, args.layers), [], os.getpid(), prefix="doc-", kind=DOCTOR_KIND)
    bar = ProgressBar()
    try:
        d = diagnose(store, args.run_id, layers=args.layers, profile=not args.no_profile, progress=bar)
    except BaseException as exc:
        bar.close()
        store.update_job(job.job_id, state="error", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}",
                         message="failed")
        raise
    bar.close()
    store.update_job(job.job_id, state="done", finished_at=time.time(), message="finished", result=d.to_dict())
    return d


def _try(store, d, n: int) -> int:
    """Measure suggestion ``n`` (1-based) as a move from the diagnosed point; print the move."""
    from qcore.runs.moves import queue_fix
    from qcore.runs.store import spec_key
    from qcore.runs.sweep_config import SweepConfig
    from qcore.service.worker import execute_job

    if not 1 <= n <= len(d.suggestions):
        print(f"error: --try {n} is not allowed; allowed: 1 to {len(d.suggestions)} (the numbered fixes above)"
              if d.suggestions else "error: --try: the diagnosis suggests no fix", file=sys.stderr)
        return 2
    fix = d.suggestions[n - 1]
    if fix.spec is None:
        print(f"error: fix {n} ({fix.what}) is advice no spec expresses: nothing to measure", file=sys.stderr)
        return 2
    origin = store.results(run_id=d.run_id)[0]
    if fix.config:
        from qcore.doctor.diagnose import config_of

        config = SweepConfig.from_dict({**config_of(store, origin).to_dict(), **fix.config}).to_dict()
        job = store.start_job(config, [fix.spec.to_dict()], os.getpid())
        print(f"fix {n} changes the sweep's settings ({fix.config}): measured as new sweep {job.job_id}",
              file=sys.stderr)
    else:
        print(queue_fix(store, origin, fix.spec, fix.what), file=sys.stderr)
        job = store.job(origin.sweep_id)
        if job.state == "queued":
            job = store.claim_next_job(os.getpid(), job.job_id) or store.job(job.job_id)
    mine = job.state == "running" and job.pid == os.getpid()
    if job.state in ("queued", "running") and not mine:
        print(f"job {job.job_id} is {job.state} in another process, which measures the fix; "
              f"'python -m qcore runs --sweep {job.job_id}' shows it when done", file=sys.stderr)
        return 0
    bar = ProgressBar()
    try:
        rows = execute_job(store, job, progress=bar) if mine else store.results(sweep_id=job.job_id)
    finally:
        bar.close()
    if mine:
        store.update_job(job.job_id, state="done", finished_at=time.time(), message="finished")
    key = spec_key(fix.spec.to_dict())
    measured = [r for r in rows if spec_key(r.spec.to_dict()) == key]
    if not measured or not measured[-1].ok:
        why = measured[-1].error if measured else "no row"
        print(f"error: fix {n} ({fix.spec.label()}) was not measured: {why}", file=sys.stderr)
        return 1
    from qcore.present.doctor_text import move_text

    print(move_text(origin, measured[-1], fix.what))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from qcore.doctor.diagnose import DoctorError
    from qcore.present.doctor_text import diagnosis_text
    from qcore.runs.store import Store

    store = Store()
    try:
        d = _diagnosis(store, args)
    except DoctorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(json.dumps(d.to_dict(), indent=2, default=str) if args.json else diagnosis_text(d))
    return _try(store, d, args.try_n) if args.try_n is not None else 0


def add_subcommands(subparsers) -> None:
    """Add ``doctor`` to an argparse subparsers object."""
    from qcore.doctor.diagnose import LAYER_MODES

    p = subparsers.add_parser("doctor", help="why a stored point lost accuracy or speed, and which fix to try")
    p.add_argument("run_id", help="a run id ('python -m qcore runs' lists them)")
    p.add_argument("--layers", choices=LAYER_MODES, default="measure",
                   help="the Layers measurement: 'measure' the most suspect layers when none is cached (default), "
                        "'cached' only read one, 'skip' none")
    p.add_argument("--no-profile", action="store_true", help="skip the profile of where the time goes")
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.add_argument("--try", dest="try_n", type=int, metavar="N",
                   help="measure suggestion N as a move from this point (the newest stored diagnosis's list, "
                        "unless --again)")
    p.add_argument("--again", action="store_true", help="with --try: diagnose again first")
    p.set_defaults(func=cmd_doctor)

