"""Import results from a qcore CSV on the Runs page: this version's, the app's download or an older version's.

Each row whose run_id is not stored yet is stored as it is (its run id, sweep, time and FP32 link kept, so the
links between rows still resolve), all rows in one transaction; the same file imported twice adds nothing. A file
that cannot be imported is refused as a whole, with the reason, and nothing is stored.

Whatever comes from the file (its name, a cell, a column) is shown as an inline code span (:func:`ui.text.code`),
never as Markdown: a cell holding ``[link](http://x)`` stays those characters, not a link.
"""

from __future__ import annotations

import csv
from typing import NamedTuple

import streamlit as st

from qcore.present.csv_load import CsvRowError, csv_results, missing_columns
from qcore.runs.store import Store
from ui.text import code

__all__ = ["MAX_MB", "ALLOWED", "Outcome", "code", "import_bytes", "panel"]

MAX_MB = 10  # a results CSV row is about 1 kB: ten thousand rows and more
ALLOWED = (f"a results CSV written by qcore (`python -m qcore sweep --out`, a Download CSV button, or an older "
           f"qcore version), as UTF-8 text, at most {MAX_MB} MB")


class Outcome(NamedTuple):
    ok: bool  # imported (perhaps 0 rows, all stored already); False: refused, nothing stored
    message: str  # Markdown, whatever came from the file in code spans
    added: int = 0


def _refused(name: str, reason: str) -> Outcome:
    return Outcome(False, f"Cannot import {code(name)}: {reason}. Nothing was stored. Allowed: {ALLOWED}.")


def import_bytes(store: Store, name: str, data: bytes) -> Outcome:
    """Import the results CSV ``data`` (uploaded as ``name``) into ``store``: what was imported, or why the file
    was refused (then nothing is stored)."""
    if not name.lower().endswith(".csv"):
        return _refused(name, "it is not a .csv file")
    if len(data) > MAX_MB * 1_000_000:
        return _refused(name, f"it is {len(data) / 1e6:,.1f} MB, over the {MAX_MB} MB limit")
    try:
        text = data.decode("utf-8-sig")  # a byte order mark (a spreadsheet's UTF-8) is not part of the header
    except UnicodeDecodeError as exc:
        return _refused(name, f"it is not a CSV: byte {exc.start + 1} is not UTF-8 text")
    if not text.strip():
        return _refused(name, "the file is empty")
    if "\0" in text:
        return _refused(name, f"it is not a CSV: byte {data.index(0) + 1} is a NUL (text has none)")
    try:
        header = next(csv.reader(text.splitlines()[:1]), [])
        if missing := missing_columns(header):
            return _refused(name, f"it lacks the column(s) {', '.join(map(code, missing))} that every qcore "
                            "results CSV has")
        results = csv_results(text)
    except CsvRowError as exc:
        where = f"row {exc.row} (line {exc.line})" + (f", column {code(exc.column)}" if exc.column else "")
        return _refused(name, f"{where} cannot be read: {code(exc.problem)}")
    except (csv.Error, ValueError) as exc:
        return _refused(name, f"it is not a CSV: {code(exc)}")
    if not results:
        return _refused(name, "it has a header but no rows")
    first: dict[str, int] = {}
    for number, r in enumerate(results, start=1):
        if not r.run_id.strip():
            return _refused(name, f"row {number} has an empty {code('run_id')}")
        if r.run_id in first:
            return _refused(name, f"rows {first[r.run_id]} and {number} have the same run_id {code(r.run_id)}")
        first[r.run_id] = number
    added, already = store.add_new_results(results)
    return Outcome(True, f"Imported {added} result{'s' * (added != 1)} from {code(name)} ({already} already stored).",
                   added)


def panel(store: Store) -> bool:
    """The uploader and what the last file it took did; a file is imported once, not again on every rerun.
    True when this run stored new rows (a table's row selection then points at other rows)."""
    up = st.file_uploader("Import results from a CSV", type=["csv"], key="csv_import", max_upload_size=MAX_MB,
                          help=f"{ALLOWED[0].upper()}{ALLOWED[1:]}. Rows whose run_id is stored already are "
                          "skipped, so importing a file twice adds nothing.")  # fmt: skip
    if up is None:
        return False
    done, new = st.session_state.get("csv_import_done"), False
    if not done or done[0] != up.file_id:
        done = st.session_state["csv_import_done"] = (up.file_id, import_bytes(store, up.name, up.getvalue()))
        new = done[1].added > 0
    outcome = done[1]
    if outcome.ok:
        st.success(outcome.message, icon=":material/upload_file:")
    else:
        st.error(outcome.message, icon=":material/block:")
    return new
