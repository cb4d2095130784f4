"""qcore.runs.query against a naive oracle: every stored row read back (``Store.results``, newest first) and filtered,
sorted and paged in Python, as the Runs page did before it asked SQLite (issue 28, item 5)."""

from __future__ import annotations

import sqlite3

import pytest

from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs import query
from qcore.runs.query import Filters
from qcore.runs.store import Store
from scripts.many_results import fill


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """600 made-up rows, and one with no model and no status (as a hand-edited or very old row may be)."""
    path = tmp_path_factory.mktemp("query") / "runs.sqlite"
    fill(path, 600, seed=3)
    store = Store(path)
    odd = Result(QuantSpec("int8", calibration="mse", mode="static"), None, "cifar10", top1=None, sweep_id="odd",
                 created_at=1.0)  # fmt: skip
    store.add_result(odd)
    with sqlite3.connect(path) as c:
        c.execute("UPDATE results SET status=NULL WHERE run_id=?", (odd.run_id,))
    return store


def _keep(r: Result, f: Filters) -> bool:
    """The old page's rule, word for word: each filter's values as text, the label's text, case aside."""
    for attr in query.COLUMNS:
        value = r.spec.precision if attr == "precision" else getattr(r, attr)
        wanted = getattr(f, attr)
        if wanted and str(value) not in wanted:
            return False
    return not f.text or f.text.lower() in r.label.lower()


def _key(sort: str):
    """Python's sort key for ``sort``, given each row's place in the newest-first list (ties keep that order)."""

    def number(name: str, descending: bool):
        def key(item):
            i, r = item
            v = getattr(r, name)
            return (v is None, 0 if v is None else (-v if descending else v), i)

        return key

    return {
        "newest": lambda item: item[0],
        "oldest": lambda item: -item[0],
        "top1": number("top1", True),
        "speedup": number("speedup", True),
        "latency": number("latency_ms_p50", False),
        "size": number("size_bytes", False),
        "spec": lambda item: (item[1].label, item[0]),
        "model": lambda item: (str(item[1].model), item[0]),
    }[sort]


def _oracle(store: Store, f: Filters, sort: str = "newest") -> list[str]:
    everything = store.results()  # newest first, ties by insertion
    for r in everything:
        if r.sweep_id == "odd":  # the NULL status the row's body does not know
            r.status = None
    kept = [(i, r) for i, r in enumerate(everything) if _keep(r, f)]
    return [r.run_id for _, r in sorted(kept, key=_key(sort))]


CASES = {
    "everything": Filters(),
    "one model": Filters(model=("resnet18",)),
    "two models, ok": Filters(model=("resnet18", "mobilenet_v2"), status=("ok",)),
    "dataset and precision": Filters(dataset=("cifar10",), precision=("int8", "fp32")),
    "text, any case": Filters(text="MSE"),
    "text and status": Filters(text="per-CHANNEL min", status=("ok", "error")),
    "no model": Filters(model=("None",)),
    "no status": Filters(status=("None", "skipped")),
    "nothing": Filters(model=("resnet18",), text="no such spec"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_counts_and_pages_equal_a_naive_filter(stored, case):
    f = CASES[case]
    want = _oracle(stored, f)
    assert query.count(stored, f) == len(want)
    pages = [query.page(stored, f, offset=o, limit=47) for o in range(0, len(want) + 47, 47)]
    assert [r.run_id for p in pages for r in p] == want
    assert all(len(p) <= 47 for p in pages) and pages[-1] == []
    assert [r.run_id for r in query.matching(stored, f, batch=50)] == want


@pytest.mark.parametrize("sort", list(query.SORTS))
@pytest.mark.parametrize("case", ["everything", "two models, ok", "text, any case"])
def test_every_order_equals_a_python_sort(stored, case, sort):
    f = CASES[case]
    want = _oracle(stored, f, sort)
    assert [r.run_id for r in query.page(stored, f, offset=10, limit=25, sort=sort)] == want[10:35]
    assert [r.run_id for r in query.matching(stored, f, sort=sort)] == want


def test_choices_busy_rows_references_and_picked_rows_equal_a_naive_look(stored):
    everything = stored.results()
    assert query.total(stored) == len(everything) == 601
    for column in query.COLUMNS:
        values = {str(r.spec.precision if column == "precision" else getattr(r, column)) for r in everything}
        if column == "status":
            values = {str(r.status) for r in everything if r.sweep_id != "odd"} | {"None"}
        assert query.choices(stored, column) == sorted(values), column
    f = CASES["two models, ok"]
    assert query.busy_ids(stored, f) == [i for i in _oracle(stored, f) if next(
        r for r in everything if r.run_id == i).busy]  # fmt: skip
    assert len(query.busy_ids(stored)) == sum(bool(r.busy) for r in everything) > 0
    bases = [r for r in everything if r.spec == FP32][:3]
    gone = [r.run_id for r in everything if r.baseline_run_id == bases[0].run_id][:1]
    want = {b.run_id: sum(r.baseline_run_id == b.run_id and r.run_id not in gone for r in everything) for b in bases}
    assert query.measured_against(stored, [b.run_id for b in bases], excluding=gone) == {
        k: v for k, v in want.items() if v}  # fmt: skip
    ids = [everything[5].run_id, everything[2].run_id, "no-such-row"]
    assert [r.run_id for r in query.among(stored, ids)] == [everything[2].run_id, everything[5].run_id]
    only = Filters(model=(everything[5].model,))
    assert [r.run_id for r in query.among(stored, ids, only)] == [i for i in ids[:2][::-1] if _keep(
        next(r for r in everything if r.run_id == i), only)]  # fmt: skip


def test_bad_arguments_name_what_is_allowed(stored):
    with pytest.raises(ValueError, match="sort='best' is not allowed; allowed: newest, oldest"):
        query.page(stored, sort="best")
    with pytest.raises(ValueError, match="column='label' is not allowed; allowed: model, dataset"):
        query.choices(stored, "label")
    with pytest.raises(ValueError, match="model='resnet18' is not allowed; allowed: a list of values"):
        Filters(model="resnet18")
    with pytest.raises(ValueError, match="limit=0, offset=0 is not allowed"):
        query.page(stored, limit=0)
    assert Filters(model=["a"]) == Filters(model=("a",)) and hash(Filters(model=["a"]))  # a list from a widget


def test_an_old_database_gets_the_indexes_and_a_garbled_body_does_not_stop_it(tmp_path):
    """A database made before the indexes existed opens with them (made once, kept), and the index on a body field
    skips a body that is not JSON rather than refusing to open the store."""
    path = tmp_path / "runs.sqlite"
    Store(path).add_result(Result(FP32, "resnet18", "cifar10", busy="load 5"))
    with sqlite3.connect(path) as c:
        for name in ("results_list", "results_busy", "results_baseline"):
            c.execute(f"DROP INDEX {name}")
        c.execute("INSERT INTO results (run_id, created_at, spec_key, body) VALUES ('bad', 2.0, '{}', 'not json')")
    store = Store(path)
    with sqlite3.connect(path) as c:
        names = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"results_list", "results_busy", "results_baseline"} <= names
        plan = " ".join(row[3] for row in c.execute(
            f"EXPLAIN QUERY PLAN SELECT run_id FROM results WHERE {query._field('busy')} > ''"))  # fmt: skip
    assert "results_busy" in plan
    assert len(query.busy_ids(store)) == 1 and query.count(store) == 2
