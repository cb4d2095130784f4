"""bench/peers.py's schedule: engines' processes timed in turns of short slices (bench/_peers_slices.py).

Oracles: the turns written out by hand, and the wall-clock times each child process records for its own slices
(two processes' slices alternate when interleaved, and are contiguous when not)."""

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from _peers_slices import DONE, READY, Child, paired_ratio, run_children, schedule, serve  # noqa: E402

# A child: serves sleeping slices (or dies at its slice number DIE), then writes its slices as its JSON.
CHILD = """
import json, sys, time
sys.path.insert(0, {bench!r})
from _peers_slices import serve
die, n = {die}, [0]
def time_slice(bs):
    n[0] += 1
    if n[0] == die:
        raise SystemExit(3)
    time.sleep(0.02)
    return [20.0]
got = serve(time_slice, [1, 32], 2)
open({path!r}, "w").write(json.dumps({{"engine": {engine!r}, "slices": got[-1], "latency": {{}}}}))
"""


def test_turns_give_every_engine_one_slice_each_in_a_rotated_order():
    got = schedule(["a", "b", "c"], [1, 32], rounds=1, slices_per_round=1, interleave=True)
    assert got == [("a", 1, 0), ("b", 1, 0), ("c", 1, 0), ("b", 32, 0), ("c", 32, 0), ("a", 32, 0)]
    together = schedule(["a", "b"], [1], rounds=2, slices_per_round=2, interleave=False)
    assert together == [("a", 1, 0), ("a", 1, 0), ("a", 1, 1), ("a", 1, 1)] + [("b", 1, 0), ("b", 1, 0),
                                                                             ("b", 1, 1), ("b", 1, 1)]  # fmt: skip
    many = schedule(["a", "b", "c", "d"], [1, 8], rounds=3, slices_per_round=4, interleave=True)
    assert len(many) == 4 * 2 * 3 * 4 and all(many.count((e, 8, 2)) == 4 for e in "abcd")


def test_the_child_times_what_each_line_asks_and_keeps_each_round_apart():
    asked = []
    out = io.StringIO()
    lines = io.StringIO("time 4 0\ntime 1 1\ntime 4 1\nend\n")
    got = serve(lambda bs: asked.append(bs) or [float(bs)], [1, 4], 2, lines, out)
    assert asked == [4, 1, 4] and got[1] == [[], [1.0]] and got[4] == [[4.0], [4.0]]
    assert [s[:2] for s in got[-1]] == [[4, 0], [1, 1], [4, 1]] and all(s[2] <= s[3] for s in got[-1])
    assert out.getvalue().split("\n")[:4] == [READY, DONE, DONE, DONE]


def _children(tmp_path, interleave, die=None):
    def start(engine):
        path = tmp_path / f"{engine}.json"
        code = CHILD.format(bench=str(Path(__file__).resolve().parent.parent / "bench"), engine=engine,
                            path=str(path), die=(die or {}).get(engine, 0))  # fmt: skip
        return Child(engine, [sys.executable, "-c", code], None, path, timeout=60)

    args = SimpleNamespace(round_budget=0.5, slice=0.25, rounds=2, batch_sizes=[1, 32], interleave=interleave)
    events = []
    results = run_children(["a", "b"], start, args, lambda e, what: events.append((e, what)))
    return results, events


def _owners(results):
    """Whose slice ran when: the engines in the order of their slices' start times."""
    return [e for _, e in sorted((s[2], r["engine"]) for r in results for s in r.get("slices", []))]


@pytest.mark.parametrize("interleave", [True, False])
def test_the_engines_processes_take_turns_or_run_one_after_another(tmp_path, interleave):
    results, events = _children(tmp_path, interleave)
    assert [r["engine"] for r in results] == ["a", "b"] and all(len(r["slices"]) == 2 * 2 * 2 for r in results)
    owners = _owners(results)
    switches = sum(x != y for x, y in zip(owners, owners[1:]))
    assert switches == (8 if interleave else 1), owners  # a b, b a, a b, ... (turns rotate) or a x8, b x8
    assert ("a", "built") in events and ("b", "done") in events


def test_a_child_that_dies_mid_way_is_an_error_row_and_the_other_goes_on(tmp_path):
    results, events = _children(tmp_path, True, die={"a": 3})
    assert results[0]["engine"] == "a" and "child exited 3" in results[0]["error"]
    assert len(results[1]["slices"]) == 8 and ("a", results[0]["error"]) in events
    assert json.loads((tmp_path / "b.json").read_text())["engine"] == "b"


def _result(engine, slice_p50s, interleaved=True):
    """A child's result at batch 1: one call per slice at that slice's p50."""
    return {"engine": engine, "interleaved": interleaved, "latency": {"1": {"samples_ms": list(slice_p50s)}},
            "slices": [[1, 0, float(k), k + 0.5, p] for k, p in enumerate(slice_p50s)]}  # fmt: skip


def test_the_ratio_to_the_fastest_peer_pairs_the_slices_of_each_turn():
    """Two of ours' three turns fell in a slow phase, one of the peer's: the p50s' ratio says 2.0 / 1.1, each turn
    says 1 / 1.1. The table's row and the summary line give the paired one."""
    import peers

    ours, peer = _result("qcore-pt2e-openvino-int8", [1.0, 2.0, 2.0]), _result("ov-int8", [1.1, 2.2, 1.1])
    assert paired_ratio(ours, peer, 1) == pytest.approx(1 / 1.1)
    assert paired_ratio({**ours, "interleaved": False}, peer, 1) is None  # timed one after another: no turns
    assert paired_ratio(_result("x", [1.0, 2.0]), peer, 1) is None  # stopped early: turns no longer line up
    rows, best = peers.summarize([ours, peer], [1], {1: ("qcore-pt2e-openvino-int8", "")})
    row = next(r for r in rows if r["engine"] == "qcore-pt2e-openvino-int8")
    assert row["ratio_to_best_peer_int8"] == best[1]["ratio"] == best[1]["auto_ratio"] == pytest.approx(1 / 1.1)
    assert row["p50_ms"] == 2.0  # the overall p50 is still the row's latency
    rows, best = peers.summarize([{**ours, "interleaved": False}, peer], [1], {})
    assert best[1]["ratio"] == pytest.approx(2.0 / 1.1)
