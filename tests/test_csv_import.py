"""Results imported from a CSV on the Runs page: an older version's file (``tests/old_results.csv``) stores its
rows as they are, once; a file that cannot be imported is refused as a whole, named, with the reason, and nothing
is stored; what comes from the file is shown as text, not as Markdown.

The oracles: the csv module reading the file on its own (top-1, p50 and size of each run_id), and a CommonMark
renderer (markdown-it) for what a message shows.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from qcore.runs.store import Store
from tests.apptest import open_linked
from ui.csv_import import MAX_MB, code, import_bytes

OLD_CSV = Path(__file__).with_name("old_results.csv")
PAYLOAD = "[link](http://x) ![](http://x/px)"


def _oracle() -> dict[str, dict[str, str]]:
    with OLD_CSV.open(newline="", encoding="utf-8") as fh:
        return {row["run_id"]: row for row in csv.DictReader(fh)}


def _number(cell: str):
    return float(cell) if cell else None


def _edited(column: str, row: int, value: str) -> bytes:
    """The old file with the cell of ``column`` in data row ``row`` (1: the first) set to ``value``."""
    rows = list(csv.reader(io.StringIO(OLD_CSV.read_text(encoding="utf-8"))))
    rows[row][rows[0].index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _without(column: str) -> bytes:
    rows = list(csv.reader(io.StringIO(OLD_CSV.read_text(encoding="utf-8"))))
    i = rows[0].index(column)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([r[:i] + r[i + 1:] for r in rows])
    return out.getvalue().encode()


def _html(markdown: str) -> str:
    md = pytest.importorskip("markdown_it")
    return md.MarkdownIt("commonmark").render(markdown)


def _check_stored_as_in_the_file(store: Store) -> None:
    want = _oracle()
    got = {r.run_id: r for r in store.results()}
    assert sorted(got) == sorted(want)
    for run_id, row in want.items():
        r = got[run_id]
        assert r.top1 == pytest.approx(_number(row["top1"])), run_id
        assert r.latency_ms_p50 == pytest.approx(_number(row["latency_ms_p50"])), run_id
        assert r.size_bytes == (int(row["size_bytes"]) if row["size_bytes"] else None), run_id
        assert (r.sweep_id, r.baseline_run_id, r.model) == (row["sweep_id"], row["baseline_run_id"], row["model"])
        assert r.created_at == float(row["created_at"]), run_id  # the file's time (epoch seconds), not the import's
        assert not r.baseline_run_id or r.baseline_run_id in got  # the FP32 link still resolves


# -- through the page ------------------------------------------------------------------------------------------


def test_the_runs_page_imports_an_old_csv_once():
    at = open_linked("pages/runs.py")
    assert [i.value for i in at.info if "No results yet" in i.value]
    up = at.file_uploader(key="csv_import")
    assert up.label == "Import results from a CSV"
    up.set_value(("old_results.csv", OLD_CSV.read_bytes(), "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.success] == ["Imported 5 results from ` old_results.csv ` (0 already stored)."]
    assert sorted(at.dataframe[0].value["run_id"]) == sorted(_oracle())
    _check_stored_as_in_the_file(Store())
    at.run()  # a rerun does not import the file again
    assert [s.value for s in at.success] == ["Imported 5 results from ` old_results.csv ` (0 already stored)."]

    at.file_uploader(key="csv_import").set_value(("old_results.csv", OLD_CSV.read_bytes(), "text/csv")).run()
    assert [s.value for s in at.success] == ["Imported 0 results from ` old_results.csv ` (5 already stored)."]
    assert len(at.dataframe[0].value) == 5 and len(Store().results()) == 5


def test_the_runs_page_refuses_a_bad_file_and_stores_nothing():
    at = open_linked("pages/runs.py")
    bad = _edited("top1", 3, "abc")
    at.file_uploader(key="csv_import").set_value(("bad.csv", bad, "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    [message] = [e.value for e in at.error]
    assert message.startswith("Cannot import ` bad.csv `: row 3 (line 4), column ` top1 ` cannot be read")
    assert "Nothing was stored" in message and f"at most {MAX_MB} MB" in message
    assert Store().results() == [] and len(at.dataframe) == 0


def test_a_markdown_file_name_shows_as_text_on_the_page():
    at = open_linked("pages/runs.py")
    at.file_uploader(key="csv_import").set_value((f"{PAYLOAD}.csv", OLD_CSV.read_bytes(), "text/csv")).run()
    [message] = [s.value for s in at.success]
    assert f"` {PAYLOAD}.csv `" in message
    html = _html(message)
    assert "<a " not in html and "<img" not in html, html
    assert f"<code>{PAYLOAD}.csv</code>" in html, html


# -- the import itself -----------------------------------------------------------------------------------------


def test_import_keeps_the_rows_and_a_second_import_adds_nothing(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    assert import_bytes(store, "old.csv", OLD_CSV.read_bytes()) == (
        True, "Imported 5 results from ` old.csv ` (0 already stored).", 5)
    _check_stored_as_in_the_file(store)
    assert import_bytes(store, "old.csv", OLD_CSV.read_bytes()) == (
        True, "Imported 0 results from ` old.csv ` (5 already stored).", 0)
    assert len(store.results()) == 5


def test_a_file_with_some_rows_stored_adds_the_others(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    lines = OLD_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    assert import_bytes(store, "two.csv", "".join(lines[:3]).encode()).added == 2
    assert import_bytes(store, "all.csv", OLD_CSV.read_bytes()).message == (
        "Imported 3 results from ` all.csv ` (2 already stored).")
    _check_stored_as_in_the_file(store)


BIG = b"x" * (MAX_MB * 1_000_000 + 1)
HEADER_ONLY = OLD_CSV.read_bytes().splitlines(keepends=True)[0]


@pytest.mark.parametrize("name, data, reason", [
    ("results.png", b"\x89PNG\r\n\x1a\n", "it is not a .csv file"),
    ("latin.csv", "model,caf\xe9\n".encode("latin-1"), "it is not a CSV: byte 10 is not UTF-8 text"),
    ("empty.csv", b"", "the file is empty"),
    ("blank.csv", b"\n \r\n", "the file is empty"),
    ("big.csv", BIG, f"it is 10.0 MB, over the {MAX_MB} MB limit"),
    ("other.csv", b"a,b\n1,2\n", "it lacks the column(s) ` run_id `, ` model `, ` dataset `, ` precision `, "
     "` status `, ` created_at ` that every qcore results CSV has"),
    ("no-id.csv", _without("run_id"), "it lacks the column(s) ` run_id ` that"),
    ("nul.csv", OLD_CSV.read_bytes().replace(b"resnet18", b"res\x00net", 1), "it is not a CSV: byte "),
    ("wide.csv", OLD_CSV.read_bytes() + b"x" * 200_000 + b"\n", "it is not a CSV: ` field larger than field limit"),
    ("header.csv", HEADER_ONLY, "it has a header but no rows"),
    ("cell.csv", _edited("top1", 3, "abc"), "row 3 (line 4), column ` top1 ` cannot be read: "
     "` could not convert string to float: 'abc' `"),
    ("time.csv", _edited("created_at", 2, "yesterday"), "row 2 (line 3), column ` created_at ` cannot be read"),
    ("spec.csv", _edited("group_size", 1, "many"), "row 1 (line 2), column ` group_size ` cannot be read"),
    ("ragged.csv", OLD_CSV.read_bytes() + b"resnet18,1,2\n", "row 6 (line 7) cannot be read: ` it has 3 cells, "
     "the header 82 `"),
    ("blank-id.csv", _edited("run_id", 4, ""), "row 4 has an empty ` run_id `"),
    ("twice.csv", _edited("run_id", 4, "fp32"), "rows 1 and 4 have the same run_id ` fp32 `"),
])  # fmt: skip
def test_a_file_that_cannot_be_imported_is_refused_whole_and_named(tmp_path, name, data, reason):
    store = Store(tmp_path / "runs.sqlite")
    ok, message, added = import_bytes(store, name, data)
    assert not ok and added == 0
    assert message.startswith(f"Cannot import ` {name} `: {reason}"), message
    assert message.endswith("Nothing was stored. Allowed: a results CSV written by qcore (`python -m qcore sweep "
                            f"--out`, a Download CSV button, or an older qcore version), as UTF-8 text, at most "
                            f"{MAX_MB} MB.")
    assert store.results() == []


def test_a_markdown_cell_is_shown_as_text(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    ok, message, _ = import_bytes(store, "x.csv", _edited("top1", 2, PAYLOAD))
    assert not ok and "row 2 (line 3), column ` top1 `" in message and store.results() == []
    html = _html(message)
    assert "<a " not in html and "<img" not in html, html
    assert PAYLOAD in html  # character for character, inside <code>


@pytest.mark.parametrize("text", ["a`b", "``x``", "`", "two\n\nlines", "*em* _u_ <b>h</b> $x$ :red[r]", PAYLOAD])
def test_a_code_span_shows_any_text_as_it_is(text):
    import html

    shown = _html(f"before {code(text)} after")
    assert shown.count("<p>") == 1 and shown.count("<code>") == 1, shown  # one paragraph, one code span
    inner = shown.split("<code>")[1].split("</code>")[0]
    assert html.unescape(inner) == text.replace("\n\n", " "), shown


def test_add_new_results_is_all_or_nothing(tmp_path):
    from qcore.present.csv_load import read_csv

    store = Store(tmp_path / "runs.sqlite")
    good = read_csv(OLD_CSV)
    with pytest.raises(AttributeError):
        store.add_new_results([*good[:3], object()])  # the 4th row fails: the first 3 are not kept
    assert store.results() == []
    assert store.add_new_results(good) == (5, 0) and store.add_new_results(good) == (0, 5)


def test_importing_new_rows_clears_the_tables_row_selection():
    lines = OLD_CSV.read_bytes().splitlines(keepends=True)
    at = open_linked("pages/runs.py")
    at.file_uploader(key="csv_import").set_value(("two.csv", b"".join(lines[:3]), "text/csv")).run()
    at.session_state["runs-table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert next(b for b in at.button if b.label == "Delete")  # a row is selected: it may be deleted
    at.file_uploader(key="csv_import").set_value(("all.csv", OLD_CSV.read_bytes(), "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.success] == ["Imported 3 results from ` all.csv ` (2 already stored)."]
    assert not [b for b in at.button if b.label == "Delete"]  # row 0 is another row now: nothing stays selected
    assert len(Store().results()) == 5
