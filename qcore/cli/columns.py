"""``python -m qcore columns``: what every column of the results CSV (and JSON) means, with its unit."""

from __future__ import annotations

import argparse
import sys

__all__ = ["cmd_columns", "add_subcommands"]


def cmd_columns(args: argparse.Namespace) -> int:
    """``columns [NAME ...]``: the column key as text, or ``--markdown`` as docs/columns.md holds it."""
    from qcore.metrics.columns import column, markdown, text

    try:
        for name in args.names:
            column(name)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    names = tuple(args.names)
    sys.stdout.write(markdown(names or None) if args.markdown else text(names))
    return 0


def add_subcommands(subparsers) -> None:
    """Add ``columns`` to an argparse subparsers object."""
    c = subparsers.add_parser("columns", help="what every column of the results CSV and JSON means, with its unit")
    c.add_argument("names", nargs="*", metavar="NAME", help="only these columns (default: all, in the CSV's order)")
    c.add_argument("--markdown", action="store_true",
                   help="as Markdown: with no NAME, the text of docs/columns.md")
    c.set_defaults(func=cmd_columns)
