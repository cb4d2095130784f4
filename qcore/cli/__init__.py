"""The command line: ``python -m qcore sweep|layers|mixed|doctor|train|worker|runs|models|datasets|fetch-data``.

One small module per group of subcommands (:mod:`.sweep`; :mod:`.layers`: layers and mixed; :mod:`.doctor`;
:mod:`.runs`: runs and worker; :mod:`.data`: train, fetch-data, models, datasets) and one progress bar
(:mod:`.progress`). Every
handler returns an exit code: 0 done, 1 could not (a failed spec, offline, missing data), 2 bad input, 3 no point
meets the budget (``sweep`` and ``runs`` with ``--sla-ms``, ``--sla-speedup`` or ``--max-drop``: :mod:`.budget`),
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from qcore.cli import app, columns, data, db, doctor, layers, runs, sweep
from qcore.env.malloc import keep_freed_memory

__all__ = ["default_prog", "build_parser", "main"]


def default_prog() -> str:
    """``qcore`` when run as the console script (``pip install`` makes it), else ``python -m qcore``."""
    return "qcore" if os.path.basename(sys.argv[0] if sys.argv else "") == "qcore" else "python -m qcore"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``qcore`` parser with every subcommand; ``prog`` (default :func:`default_prog`) heads its usage."""
    parser = argparse.ArgumentParser(prog=prog or default_prog(), description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep.add_subcommand(sub)
    runs.add_subcommands(sub)
    data.add_subcommands(sub)
    layers.add_subcommands(sub)
    columns.add_subcommands(sub)
    app.add_subcommand(sub)
    db.add_subcommands(sub)
    doctor.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the subcommand; return its exit code."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # a sweep or a doctor times models in this process (qcore.env.malloc)
    return db.guarded(args.func)(args)  # a damaged database, a full disk: one named line, no traceback
