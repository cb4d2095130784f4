"""The app's cluster panels through AppTest, without Ray: Home shows the cluster the worker last recorded
(nodes, CPUs, bench slots) or why it could not reach it; the Sweep page shows each spec's node and queue
state from the job. The pages read files and rows the worker (the Ray driver) wrote; they never call Ray."""

from __future__ import annotations

import pytest

from qcore.cluster import write_snapshot
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep import SweepConfig
from tests.apptest import APP  # noqa: F401
from tests.apptest import open_linked as _app

ADDRESS = "127.0.0.1:6379"
NODES = [{"node_id": "a1" * 28, "host": "bench-1", "ip": "10.0.0.1", "cpus": 8, "bench": 1},
         {"node_id": "b2" * 28, "host": "eval-1", "ip": "10.0.0.2", "cpus": 4, "bench": 0}]


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")




def test_home_shows_no_cluster_when_none_is_configured(monkeypatch):
    monkeypatch.delenv("QCORE_RAY_ADDRESS", raising=False)
    at = _app()
    assert "Cluster" not in [h.value for h in at.subheader]


def test_home_shows_the_nodes_cpus_and_bench_slots_the_worker_recorded(monkeypatch):
    monkeypatch.setenv("QCORE_RAY_ADDRESS", ADDRESS)
    write_snapshot({"address": ADDRESS, "nodes": NODES, "cpus": 12, "bench_slots": 1, "error": ""})
    at = _app()
    assert "Cluster" in [h.value for h in at.subheader]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Nodes"], metrics["CPUs"], metrics["Bench slots"]) == ("2", "12", "1")
    table = at.dataframe[-1].value
    assert list(table["host"]) == ["bench-1", "eval-1"] and list(table["bench slot"]) == [1, 0]


def test_home_says_why_the_cluster_could_not_be_reached_and_how_to_declare_a_slot(monkeypatch):
    monkeypatch.setenv("QCORE_RAY_ADDRESS", ADDRESS)
    write_snapshot({"address": ADDRESS, "nodes": [], "cpus": 0, "bench_slots": 0,
                    "error": "ClusterUnreachable: no Ray cluster answers at 127.0.0.1:6379"})
    assert any("could not reach the cluster" in e.value for e in _app().error)
    write_snapshot({"address": ADDRESS, "nodes": [{**NODES[1]}], "cpus": 4, "bench_slots": 0, "error": ""})
    assert any("qcore_bench" in w.value and "ray start" in w.value for w in _app().warning)
    monkeypatch.setenv("QCORE_RAY_ADDRESS", "not an address")
    assert any("allowed: auto" in e.value for e in _app().error)


def test_sweep_page_shows_each_specs_node_and_queue_state(tmp_path):
    from qcore.runs.store import Store

    store = Store()
    jid = store.submit_job(SweepConfig().to_dict(), [QuantSpec("int8").to_dict(), QuantSpec("fp16").to_dict()])
    store.update_job(jid, result={"cluster": {"address": ADDRESS, "nodes": NODES, "cpus": 12, "bench_slots": 1},
                                  "specs": [{"label": "fp32 (baseline)", "state": "timed on bench-1", "host": "bench-1",
                                             "node_id": NODES[0]["node_id"], "retries": 0},
                                            {"label": "int8", "state": "queued for a bench slot", "host": "eval-1",
                                             "node_id": NODES[1]["node_id"], "retries": 1},
                                            {"label": "fp16", "state": "queued for accuracy (any node)", "host": "",
                                             "node_id": "", "retries": 0}]})
    at = _app("pages/sweep.py", job=jid)
    assert any("On the cluster: 1 of 3 specs timed" in e.label for e in at.expander)
    table = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert list(table["state"]) == ["timed on bench-1", "queued for a bench slot", "queued for accuracy (any node)"]
    assert list(table["retries"]) == [0, 1, 0] and list(table["node"])[1] == "b2" * 6
