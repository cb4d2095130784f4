"""``python -m qcore db check|salvage``: a damaged run database, checked and saved; and the named errors.

``db check`` reads the whole database and its log and says what is wrong (exit 1 when anything is);
``db salvage`` copies what can be read into a new database (rows the damaged file cannot give come from the last
backup, ``runs.sqlite.backup``), keeps the damaged file beside it and says how many rows were saved.
:func:`guarded` runs any subcommand so that a damaged database or a full disk is one named message (exit 1),
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

__all__ = ["cmd_db", "guarded", "add_subcommands"]


def cmd_db(args: argparse.Namespace) -> int:
    """``db check`` / ``db salvage`` on ``--db`` (default: the run database, ``$QCORE_DB`` or the data folder's)."""
    from pathlib import Path

    from qcore.runs.db_check import check
    from qcore.runs.db_salvage import salvage
    from qcore.runs.store import default_db

    path = Path(args.db).expanduser() if args.db else default_db()
    report = check(path)
    if args.action == "check":
        print(report.text())
        if not report.ok:
            print("'python -m qcore db salvage' copies what can be read into a new database", file=sys.stderr)
        return 0 if report.ok else 1
    if not path.exists():
        print(f"error: there is no database at {path}", file=sys.stderr)
        return 1
    if report.ok and not args.force:
        print(f"{path} is not damaged ({report.text().splitlines()[0]}); nothing to salvage (--force copies it "
              "anyway)", file=sys.stderr)
        return 0
    print(salvage(path).text())
    return 0


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``func`` with a damaged run database or a full disk said in one line on stderr (exit 1)."""
    from qcore.env.space import NoSpace
    from qcore.runs.db_check import StoreDamaged

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (StoreDamaged, NoSpace) as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1

    return run


def add_subcommands(subparsers) -> None:
    """Add ``db`` to an argparse subparsers object."""
    d = subparsers.add_parser("db", help="check or salvage a damaged run database")
    d.add_argument("action", choices=["check", "salvage"],
                   help="check: say what is damaged; salvage: copy what can be read (and the backup's rows) into a "
                        "new database, keeping the damaged file beside it")
    d.add_argument("--db", metavar="PATH", help="the database (default: $QCORE_DB or the data folder's runs.sqlite)")
    d.add_argument("--force", action="store_true", help="salvage even when the check finds nothing wrong")
    d.set_defaults(func=cmd_db)
