"""The Runs page's rows, asked of SQLite: which stored results a set of filters keeps, how many, one page of them
in an order, the values each filter offers, and all of them streamed for an export.

Only the rows asked for become :class:`~qcore.metrics.result.Result` objects: a page of 50 of 10,000 results reads
50 bodies, and a count reads none (the ``results_list`` index holds every column a filter or the default order
reads; ``results_busy`` and ``results_baseline`` index two fields of the body: :data:`qcore.runs.store.SCHEMA`).
A filter keeps a row when each of its columns holds one of the chosen values (none chosen: any value) and its
spec's label contains ``text``, case aside, as Python's ``str.lower`` sees it: ``Filters(model=("resnet18",),
status=("ok", "error"), text="mse")`` keeps resnet18's measured and failed rows of MSE-calibrated specs, and
``page(store, that, offset=50, limit=50, sort="top1")`` is the second page of them, best top-1 first.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from qcore.metrics.result import Result
from qcore.runs.db_check import open_db
from qcore.runs.store import Store

__all__ = ["COLUMNS", "SORTS", "PAGE_SIZES", "Filters", "choices", "count", "total", "page", "matching", "among",
           "busy_ids", "measured_against"]

COLUMNS = ("model", "dataset", "precision", "status", "sweep_id")  # the columns a filter chooses values of
PAGE_SIZES = (25, 50, 100, 200)
_NEWEST = "created_at DESC, rowid DESC"  # the store's order (Store.results): newest first, then the later insert


def _field(name: str) -> str:
    """A field of a row's JSON body (NULL where the body is not JSON): the expression ``results_busy`` and
    ``results_baseline`` index, written the same way so that SQLite uses them."""
    return f"json_extract(CASE WHEN json_valid(body) THEN body END, '$.{name}')"


def _by(name: str, descending: bool) -> str:
    """Order by a number of the body, rows without one last, then newest first."""
    return f"{_field(name)} IS NULL, {_field(name)}{' DESC' if descending else ''}, {_NEWEST}"


# key: (its button on the page, the order in words, ORDER BY)
SORTS: dict[str, tuple[str, str, str]] = {
    "newest": ("newest", "newest first", _NEWEST),
    "oldest": ("oldest", "oldest first", "created_at, rowid"),
    "top1": ("top-1", "top-1, highest first", _by("top1", True)),
    "speedup": ("speed-up", "speed-up, highest first", _by("speedup", True)),
    "latency": ("p50", "p50 latency, lowest first", _by("latency_ms_p50", False)),
    "size": ("size", "size, smallest first", _by("size_bytes", False)),
    "spec": ("spec", "spec, A to Z", f"label, {_NEWEST}"),
    "model": ("model", "model, A to Z", f"model, {_NEWEST}"),
}


@dataclass(frozen=True)
class Filters:
    """What the Runs page keeps: for each of :data:`COLUMNS` the values a row may hold (empty: any; ``"None"``
    also keeps a row with no value, as the page lists it), and a piece of the spec's label (empty: any)."""

    model: tuple[str, ...] = ()
    dataset: tuple[str, ...] = ()
    precision: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    sweep_id: tuple[str, ...] = ()
    text: str = ""

    def __post_init__(self) -> None:
        for name in COLUMNS:  # a list from a widget is fine: kept as a tuple, so a Filters can key a cache
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ValueError(f"{name}={value!r} is not allowed; allowed: a list of values (empty: any)")
            object.__setattr__(self, name, tuple(str(v) for v in value))
        if not isinstance(self.text, str):
            raise ValueError(f"text={self.text!r} is not allowed; allowed: a string (empty: any)")

    def where(self) -> tuple[str, list]:
        """``(" WHERE ...", arguments)``; ``("", [])`` when it keeps every row."""
        terms, args = [], []
        for name in COLUMNS:
            wanted = getattr(self, name)
            if not wanted:
                continue
            term = f"{name} IN ({', '.join('?' * len(wanted))})"
            terms.append(f"({term} OR {name} IS NULL)" if "None" in wanted else term)
            args += wanted
        if self.text:
            terms.append("qcore_contains(label, ?)")
            args.append(self.text.lower())
        return (" WHERE " + " AND ".join(terms) if terms else ""), args


def _contains(label: str | None, lowered: str) -> bool:
    return lowered in (label or "").lower()


@contextmanager
def _read(store: Store) -> Iterator[sqlite3.Connection]:
    """A connection to ``store``'s database that knows ``qcore_contains`` (Python's own lower-casing: SQLite's
    ``lower`` and ``LIKE`` fold ASCII letters only)."""
    with open_db(store.path) as conn:
        conn.create_function("qcore_contains", 2, _contains, deterministic=True)
        yield conn


def _results(rows: Iterable[sqlite3.Row]) -> list[Result]:
    return [Result.from_dict(json.loads(row["body"])) for row in rows]


def choices(store: Store, column: str) -> list[str]:
    """The values ``column`` holds in the stored results, as the page lists them: text, sorted (no value:
    ``"None"``)."""
    if column not in COLUMNS:
        raise ValueError(f"column={column!r} is not allowed; allowed: {', '.join(COLUMNS)}")
    with _read(store) as c:
        return sorted({str(row[0]) for row in c.execute(f"SELECT DISTINCT {column} FROM results")})


def total(store: Store) -> int:
    """How many results are stored."""
    with _read(store) as c:
        return c.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def count(store: Store, filters: Filters = Filters()) -> int:
    """How many stored results ``filters`` keeps (no body is read)."""
    where, args = filters.where()
    with _read(store) as c:
        return c.execute(f"SELECT COUNT(*) FROM results{where}", args).fetchone()[0]


def _order(sort: str) -> str:
    if sort not in SORTS:
        raise ValueError(f"sort={sort!r} is not allowed; allowed: {', '.join(SORTS)}")
    return SORTS[sort][2]


def page(store: Store, filters: Filters = Filters(), *, offset: int = 0, limit: int = 50,
         sort: str = "newest") -> list[Result]:
    """The results ``filters`` keeps, in the order ``sort`` names (a key of :data:`SORTS`), from the ``offset``-th
    (0: the first), at most ``limit`` of them: only these are read and made into Results."""
    if int(limit) < 1 or int(offset) < 0:
        raise ValueError(f"limit={limit!r}, offset={offset!r} is not allowed; allowed: limit >= 1, offset >= 0")
    where, args = filters.where()
    with _read(store) as c:
        return _results(c.execute(f"SELECT body FROM results{where} ORDER BY {_order(sort)} LIMIT ? OFFSET ?",
                                  [*args, int(limit), int(offset)]))  # fmt: skip


def matching(store: Store, filters: Filters = Filters(), sort: str = "newest", batch: int = 200) -> Iterator[Result]:
    """Every result ``filters`` keeps, in ``sort``'s order, read ``batch`` rows at a time (an export of all of them
    holds one batch of Results at once, not the whole set). The read sees the database as it was at the start."""
    where, args = filters.where()
    with _read(store) as c:
        c.execute("BEGIN")  # one snapshot for the whole read, however long the export takes
        try:
            cur = c.execute(f"SELECT body FROM results{where} ORDER BY {_order(sort)}", args)
            while rows := cur.fetchmany(batch):
                yield from _results(rows)
        finally:
            c.execute("COMMIT")


def among(store: Store, run_ids: Iterable[str], filters: Filters = Filters()) -> list[Result]:
    """Those of ``run_ids`` that are stored and that ``filters`` keeps, newest first."""
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        return []
    where, args = filters.where()
    where = (where + " AND " if where else " WHERE ") + f"run_id IN ({', '.join('?' * len(ids))})"
    with _read(store) as c:
        return _results(c.execute(f"SELECT body FROM results{where} ORDER BY {_NEWEST}", [*args, *ids]))


def busy_ids(store: Store, filters: Filters = Filters()) -> list[str]:
    """The run ids, newest first, of the results ``filters`` keeps that were timed while the machine was busy
    (their ``busy`` says why)."""
    where, args = filters.where()
    where = (where + " AND " if where else " WHERE ") + f"{_field('busy')} > ''"
    with _read(store) as c:
        return [row[0] for row in c.execute(f"SELECT run_id FROM results{where} ORDER BY {_NEWEST}", args)]


def measured_against(store: Store, base_ids: Iterable[str], excluding: Iterable[str] = ()) -> dict[str, int]:
    """For each of ``base_ids`` (FP32 rows), how many other stored results were measured against it (name it as
    their ``baseline_run_id``), leaving out those of ``excluding``; ids no row names are left out."""
    bases, skip = list(dict.fromkeys(base_ids)), list(dict.fromkeys(excluding))
    if not bases:
        return {}
    sql = (f"SELECT {_field('baseline_run_id')} AS base, COUNT(*) FROM results WHERE {_field('baseline_run_id')} "
           f"IN ({', '.join('?' * len(bases))})")
    if skip:
        sql += f" AND run_id NOT IN ({', '.join('?' * len(skip))})"
    with _read(store) as c:
        return {row[0]: row[1] for row in c.execute(sql + " GROUP BY base", [*bases, *skip])}
