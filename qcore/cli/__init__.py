"""The command line: ``python -m qcore sweep|layers|mixed|train|worker|runs|models|datasets|fetch-data``.

One small module per group of subcommands (:mod:`.sweep`; :mod:`.layers`: layers and mixed; :mod:`.runs`: runs
and worker; :mod:`.data`: train, fetch-data, models, datasets) and one progress bar (:mod:`.progress`). Every
handler returns an exit code: 0 done, 1 could not (a failed spec, offline, missing data), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse

from qcore.cli import data, layers, runs, sweep

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m qcore`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m qcore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep.add_subcommand(sub)
    runs.add_subcommands(sub)
    data.add_subcommands(sub)
    layers.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the subcommand; return its exit code."""
    args = build_parser().parse_args(argv)
    return args.func(args)
