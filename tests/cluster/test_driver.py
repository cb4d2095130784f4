"""Sweeps on a real Ray cluster of two nodes on this machine, every socket on the loopback interface.

One cluster for the module (starting one costs seconds): a head and a worker node of one CPU and one
``qcore_bench`` slot each, started with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` and ``--node-ip-address
127.0.0.1`` (without the variable Ray binds the machine's own address too). The driver is this process, or a
``python -m qcore sweep --cluster`` subprocess for the killed-driver test. Tiny: random resnet18 at 32 px,
16 calibration and 32 evaluation images, 0.2 s latency budgets, no compiled FP32.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements-cluster.txt)")

from qcore.quant.spec import QuantSpec  # noqa: E402
from qcore.runs.store import Store, spec_key  # noqa: E402
from qcore.runs.sweep import SweepConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}
SPECS = [
    QuantSpec("int8", mode="dynamic"),
    QuantSpec("fp16"),
    QuantSpec("int8", granularity="per-tensor", mode="dynamic"),
    QuantSpec("int4", granularity="per-group", calibration="minmax", mode="weight-only"),
]
NODE = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "resources": {"qcore_bench": 1}}
# How long a driver may take to commit its first rows (a subprocess that imports torch and Ray, connects, prepares
# the data, then FP32 and a spec on 1-CPU nodes): a minute when quiet, many at load 10-15 on 2 cores. A wait only
# costs its length when something is broken.
FIRST_ROWS_S = 900


def _config(checkpoint) -> SweepConfig:
    return SweepConfig(model="resnet18", weights=str(checkpoint), calib_size=16, eval_limit=32, calib_batch_size=16,
                       latency_budget_s=0.2, fp32_compiled=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    home = tmp_path_factory.mktemp("ray-nodes")
    saved = dict(os.environ)
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # conftest.py, before Ray was imported
    os.environ["QCORE_HOME"] = str(home)  # the nodes' own home: they must never need anything from it
    started = time.monotonic()
    c = Cluster(initialize_head=True, head_node_args={
        **NODE, "include_dashboard": False,
        # a killed node is declared dead in about a second, not Ray's default of about 15
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 2,
                           "health_check_initial_delay_ms": 0}})  # fmt: skip
    c.add_node(**NODE)
    c.started_s = time.monotonic() - started
    c.node_home = home
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def _ray_pids(c) -> set[int]:
    import psutil

    pids = set()
    for node in [c.head_node, *c.worker_nodes]:
        for infos in node.all_processes.values():
            for info in infos:
                try:
                    proc = psutil.Process(info.process.pid)
                    pids |= {proc.pid} | {ch.pid for ch in proc.children(recursive=True)}
                except psutil.NoSuchProcess:
                    pass
    return pids


def test_every_listening_socket_of_the_cluster_is_on_loopback(cluster):
    import psutil

    from qcore.cluster.session import connect

    connect(cluster.address)  # this process too: a driver has sockets of its own
    listening = []
    for pid in _ray_pids(cluster) | {os.getpid()}:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 4, listening  # a GCS and two raylets at least
    assert {ip for _, ip, _ in listening} <= LOOPBACK, listening


def _run(store, jid, cluster_address=None):
    from qcore.service.worker import execute_job

    return execute_job(store, store.job(jid), cluster=cluster_address)


def test_two_node_sweep_gives_the_local_rows_and_times_one_spec_at_a_time_per_node(
        cluster, tmp_path, resnet18_checkpoint, fashion_mnist):
    store = Store(tmp_path / "runs.sqlite")
    config = _config(resnet18_checkpoint)
    on_cluster = store.submit_job(config.to_dict(), [s.to_dict() for s in SPECS])
    local = store.submit_job(config.to_dict(), [s.to_dict() for s in SPECS])
    rows = _run(store, on_cluster, cluster.address)
    here = _run(store, local)

    assert len(rows) == len(here) == len(SPECS) + 1
    assert all(r.status == "ok" for r in rows + here), [(r.label, r.error) for r in rows + here]
    top1 = {spec_key(r.spec.to_dict()): r.top1 for r in here}
    assert {spec_key(r.spec.to_dict()): r.top1 for r in rows} == top1  # same images, seeds, weights: same top-1
    agreement = {spec_key(r.spec.to_dict()): r.agreement for r in here}
    assert {spec_key(r.spec.to_dict()): r.agreement for r in rows} == agreement

    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert {r.node_id for r in rows} <= nodes and len({r.node_id for r in rows}) == 2  # both nodes timed
    assert all(r.threads == 1 and r.host and r.cpu_model and r.retries == 0 for r in rows)  # a node's 1 CPU
    assert all(r.node_id == "" and r.host for r in here)
    base = next(r for r in rows if r.spec.is_reference)
    assert {r.baseline_run_id for r in rows} == {base.run_id}
    for node in {r.node_id for r in rows}:  # one timing per node at a time
        spans = sorted((r.timed_from, r.timed_to) for r in rows if r.node_id == node)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    stored = [f.name for f in cluster.node_home.rglob("*") if f.suffix in (".pt", ".safetensors", ".gz", ".png")]
    assert stored == []  # no node trained, downloaded or cached weights or data: they came in the object store
    state = store.job(on_cluster).result
    assert len(state["cluster"]["nodes"]) == 2 and state["cluster"]["bench_slots"] == 2
    assert [s["state"].split(":")[0] for s in state["specs"]] == ["timed on " + base.host] + ["done"] * len(SPECS)
    assert {s["node_id"] for s in state["specs"]} == {r.node_id for r in rows}


def test_a_cluster_without_bench_slots_refuses_to_time_and_says_how_to_declare_one(cluster):
    from qcore.cluster.session import cluster_info, connect, require_bench

    connect(cluster.address)
    info = cluster_info(cluster.address)
    require_bench(info)  # two slots: fine
    with pytest.raises(ValueError, match=r"no qcore_bench slot.*--resources='\{\"qcore_bench\": 1\}'"):
        require_bench({**info, "nodes": [{**n, "bench": 0} for n in info["nodes"]], "bench_slots": 0})


def test_a_spec_that_fails_on_a_node_returns_an_error_naming_that_node(cluster, resnet18_checkpoint, fashion_mnist):
    import torch

    from qcore.cluster.session import connect
    from qcore.cluster.tasks import accuracy_task
    from qcore.runs.sweep import prepare

    connect(cluster.address)
    p = prepare(_config(resnet18_checkpoint))
    p.eval_batches = [(torch.zeros(2, 1, 32, 32), torch.zeros(2, dtype=torch.long))]  # one channel: conv1 raises
    out = ray.get(accuracy_task.remote(ray.put(p), QuantSpec("fp16").to_dict()))
    node = out["where"]["node_id"]
    assert node in {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert out["error"].startswith(f"RuntimeError on node {out['where']['host']} ({node[:12]}): "), out["error"]


def test_a_node_killed_mid_sweep_still_finishes_every_spec_once(cluster, tmp_path, resnet18_checkpoint,
                                                                   fashion_mnist):
    store = Store(tmp_path / "runs.sqlite")
    specs = SPECS + [QuantSpec("bf16"), QuantSpec("int8", granularity="per-tensor", mode="weight-only")]
    jid = store.submit_job(_config(resnet18_checkpoint).to_dict(), [s.to_dict() for s in specs])
    doomed = cluster.add_node(**NODE)
    doomed_id = doomed.node_id
    killed = threading.Event()
    over = threading.Event()  # the sweep has returned: the watcher stops (never kills a node another test uses)
    killed_at = []

    def busy() -> bool:  # a worker process of that node is running one of our tasks (Ray titles it so)
        import psutil

        raylet = psutil.Process(doomed.all_processes["raylet"][0].process.pid)
        titles = []
        for ch in raylet.children(recursive=True):
            try:
                titles.append(" ".join(ch.cmdline()))
            except psutil.Error:
                pass
        return any(t.startswith(("ray::accuracy_task", "ray::latency_task")) for t in titles)

    def kill_when_it_has_work():  # for as long as the sweep runs, however long a loaded machine makes that
        while not killed.is_set() and not over.is_set():
            if busy():
                time.sleep(0.5)  # well into the task
                cluster.remove_node(doomed, allow_graceful=False)
                killed_at.append(time.time())
                killed.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_when_it_has_work, daemon=True)
    watcher.start()
    try:
        rows = _run(store, jid, cluster.address)
    finally:
        over.set()
    watcher.join(60)
    assert killed.is_set(), "the extra node never ran a task: nothing was killed"
    counts = Counter(spec_key(r.spec.to_dict()) for r in store.results(sweep_id=jid))
    assert sorted(counts) == sorted(spec_key(s.to_dict()) for s in [QuantSpec("fp32"), *specs])
    assert set(counts.values()) == {1}, counts
    assert all(r.status == "ok" for r in rows), [(r.label, r.error) for r in rows]
    assert sum(r.retries for r in rows) >= 1, "no task was lost with the node"
    assert all(r.node_id != doomed_id for r in rows if r.timed_from > killed_at[0])  # nothing timed on it after


@pytest.mark.timeout(FIRST_ROWS_S + 900)  # that wait, then the resumed sweep
def test_a_killed_driver_resumes_with_nothing_lost_or_duplicated(cluster, tmp_path, resnet18_checkpoint,
                                                                  fashion_mnist):
    db = tmp_path / "runs.sqlite"
    store = Store(db)
    jid = store.submit_job(_config(resnet18_checkpoint).to_dict(), [s.to_dict() for s in SPECS])
    store.update_job(jid, state="interrupted")  # a recorded job the CLI drives with --resume
    cmd = [sys.executable, "-m", "qcore", "sweep", "--resume", jid, "--cluster", cluster.address]
    env = {**os.environ, "QCORE_DB": str(db), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + FIRST_ROWS_S
        while len(store.results(sweep_id=jid)) < 2:
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the driver committed fewer than 2 rows in {FIRST_ROWS_S} s"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
    before = {r.run_id for r in store.results(sweep_id=jid)}
    assert 2 <= len(before) < len(SPECS) + 1, "the kill came too late to test anything"
    assert store.job(jid).state == "interrupted"

    from qcore.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QCORE_DB", str(db))
        assert main(["sweep", "--resume", jid, "--cluster", cluster.address]) == 0
    rows = store.results(sweep_id=jid)
    assert before <= {r.run_id for r in rows}
    counts = Counter(spec_key(r.spec.to_dict()) for r in rows)
    assert sorted(counts) == sorted(spec_key(s.to_dict()) for s in [QuantSpec("fp32"), *SPECS])
    assert set(counts.values()) == {1}, counts
    assert all(r.status == "ok" and r.node_id for r in rows)
    base = next(r for r in rows if r.spec.is_reference)
    assert {r.baseline_run_id for r in rows} == {base.run_id}
