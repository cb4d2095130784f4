"""``--sla-ms``, ``--sla-speedup``, ``--max-drop`` and ``--ship`` of ``sweep`` and ``runs``: the point to ship.

After the sweep (or over the stored rows ``runs`` lists), the rows are judged against the budget
(:func:`qcore.metrics.budget.choose`) and the point to ship is printed, or that none meets the budget and which
budget is the closest to being met. The exit status says it, so a CI pipeline can gate on it:
:data:`NONE_MEETS` (3) when no point meets the budget, else the command's own (0, or 1 when a spec failed). A
value out of range is a usage error (2) naming the option and what is allowed. ``--latency-budget`` is something
else: the seconds of timing each spec gets.
"""

from __future__ import annotations

import argparse
import sys

from qcore.metrics.budget import PREFER, Budget, choose, parse

__all__ = ["NONE_MEETS", "OPTIONS", "add_options", "budget_of", "decide"]

NONE_MEETS = 3  # the exit status when no point meets the budget
OPTIONS = ("sla_ms", "sla_speedup", "max_drop", "ship")


def _value(name: str):
    def read(text: str) -> float:
        try:
            return parse(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return read


def add_options(s, over: str = "the sweep's rows") -> None:
    """Add the budget's options to subparser ``s``; ``over``: what they judge, in the help."""
    g = s.add_argument_group(
        "the decision", f"judge {over} against a latency and an accuracy budget and print the point to ship; exit "
        f"status 0 when one meets them, {NONE_MEETS} when none does (rows with an error or without an FP32 "
        "reference are never chosen)")  # fmt: skip
    lat = g.add_mutually_exclusive_group()
    lat.add_argument("--sla-ms", type=_value("sla_ms"), metavar="MS",
                     help="latency budget: the median latency (p50) in milliseconds at the timed batch size "
                          "(the sweep's --batch-size), above 0 and at most 1,000,000; not the sweep's "
                          "--latency-budget, its seconds of timing")
    lat.add_argument("--sla-speedup", type=_value("sla_speedup"), metavar="X",
                     help="latency budget as a speed-up over FP32 eager timed in turns with the row, above 0 and at "
                          "most 1000 (instead of --sla-ms)")
    g.add_argument("--max-drop", type=_value("max_drop"), metavar="POINTS",
                   help="accuracy budget: the largest drop of top-1 from FP32, in percentage points, 0 to 100; a row "
                        "meets it when the largest drop the 95 percent interval of its change allows is within it")
    g.add_argument("--ship", choices=PREFER, default=None,
                   help="which point to ship among those that meet the budget: the smallest (default) or the fastest")


def budget_of(args: argparse.Namespace) -> Budget | None:
    """The budget ``args`` ask for, or None; ``--ship`` without a budget is a usage error (exit 2)."""
    given = {k: getattr(args, k, None) for k in ("sla_ms", "sla_speedup", "max_drop")}
    if all(v is None for v in given.values()):
        if getattr(args, "ship", None) is not None:
            args.parser.error("argument --ship: it chooses among the points that meet a budget; give --sla-ms, "
                              "--sla-speedup or --max-drop too")
        return None
    try:
        return Budget(**given, prefer=args.ship or "smallest")
    except ValueError as exc:  # (argparse checked each value; this is their combination)
        args.parser.error(str(exc))


def decide(rows, args: argparse.Namespace, code: int) -> int:
    """Print the point to ship among ``rows`` under the budget ``args`` ask for; the exit status: ``code`` when a
    point meets it (or no budget is given), :data:`NONE_MEETS` when none does."""
    budget = budget_of(args)
    if budget is None:
        return code
    choice = choose(rows, budget)
    print(f"\nbudget: {budget.text()}")
    print(choice.ship_text())
    for note in choice.notes():
        print(f"note: {note}", file=sys.stderr)
    return code if choice.ship is not None else NONE_MEETS
