"""Cluster addresses and the no-cluster default, without Ray: a wrong address fails in seconds with nothing
left running, and a sweep without an address never imports Ray."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qcore.cluster import ClusterUnreachable, check_address, configured_address, probe
from qcore.runs.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("good", ["auto", "127.0.0.1:6379", "ray://head.example:10001", "[::1]:6379"])
def test_allowed_addresses_pass(good):
    assert check_address(good) == good


@pytest.mark.parametrize("bad", ["", "localhost", "http://h:1", "h:0", "h:70000", "ray://h", "h:port"])
def test_other_addresses_are_refused_naming_the_allowed_forms(bad):
    with pytest.raises(ValueError, match="allowed: auto, ray://HOST:PORT"):
        check_address(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_an_unreachable_address_fails_within_seconds_saying_what_to_do():
    start = time.monotonic()
    with pytest.raises(ClusterUnreachable, match=r"no Ray cluster answers at 127\.0\.0\.1:\d+.*ray start --head"):
        probe(f"127.0.0.1:{_closed_port()}")
    assert time.monotonic() - start < 5


def test_configured_address_reads_the_environment(monkeypatch):
    monkeypatch.delenv("QCORE_RAY_ADDRESS", raising=False)
    assert configured_address() is None
    monkeypatch.setenv("QCORE_RAY_ADDRESS", " 127.0.0.1:6379 ")
    assert configured_address() == "127.0.0.1:6379"
    monkeypatch.setenv("QCORE_RAY_ADDRESS", "nowhere")
    with pytest.raises(ValueError, match="not allowed"):
        configured_address()


# What "in seconds" may take on a loaded machine once the modules are imported (their first import, torch's
# among them, takes as long as the machine's load makes it, and is no part of the claim): the probe's own 3 s
# timeout, and a margin no quiet machine needs. The error naming "after 3 s" shows which timeout was used.
SECONDS = 60


def test_the_cli_refuses_an_unreachable_cluster_before_recording_a_job(tmp_path, monkeypatch, capsys):
    import qcore.backends
    import qcore.runs.sweep  # noqa: F401  (what the command imports before it probes: not timed)
    from qcore.cli import main

    monkeypatch.setenv("QCORE_DB", str(tmp_path / "runs.sqlite"))
    start = time.monotonic()
    assert main(["sweep", "--precision", "int8", "--cluster", f"127.0.0.1:{_closed_port()}"]) == 2
    assert time.monotonic() - start < SECONDS
    err = capsys.readouterr().err
    assert "no Ray cluster answers" in err and "after 3 s" in err, err
    assert Store().jobs() == []  # nothing queued, nothing "running"


def test_a_worker_job_on_an_unreachable_cluster_ends_as_an_error_in_seconds(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements-cluster.txt)")
    import qcore.cluster.driver  # noqa: F401  (Ray and torch: imported before the clock runs)
    from qcore.runs.sweep import SweepConfig
    from qcore.service.worker import run_job

    store = Store(tmp_path / "runs.sqlite")
    jid = store.submit_job(SweepConfig().to_dict(), [])
    monkeypatch.setenv("QCORE_RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setattr("ray.init", lambda *a, **k: pytest.fail("ray.init was called: the probe let it through"))
    start = time.monotonic()
    run_job(store, store.claim_next_job(12345))
    job = store.job(jid)
    assert time.monotonic() - start < SECONDS
    assert job.state == "error" and "no Ray cluster answers" in job.error and "after 3 s" in job.error, job
    assert store.results(sweep_id=jid) == []


def test_without_an_address_neither_import_nor_a_local_sweep_imports_ray(tmp_path, resnet18_checkpoint,
                                                                        fashion_mnist):
    code = f"""
import os, sys
os.environ.pop("QCORE_RAY_ADDRESS", None)
import qcore, qcore.service.worker, qcore.cluster, qcore.cli.sweep
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from qcore.quant.spec import QuantSpec
from qcore.service.worker import run_job
store = Store({str(tmp_path / 'runs.sqlite')!r})
config = SweepConfig(model="resnet18", weights={str(resnet18_checkpoint)!r}, calib_size=16, eval_limit=32,
                     latency_budget_s=0.1,
                     fp32_compiled=False)
jid = store.submit_job(config.to_dict(), [QuantSpec("int8", mode="dynamic").to_dict()])
run_job(store, store.claim_next_job(os.getpid()))
assert store.job(jid).state == "done", store.job(jid)
assert len(store.results(sweep_id=jid)) == 2
print("ray" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "False"
