"""This process as a Ray driver: connect once, read the cluster's nodes and slots. Imports Ray.

Only a worker process or the CLI calls :func:`connect` (``ray.init`` is once per process and not thread-safe:
never from a Streamlit script). The connection ships this checkout's ``qcore`` package to the nodes
(``runtime_env`` ``py_modules``), so every node runs the driver's code; the nodes need the same Python
packages (requirements.txt) installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

try:
    import ray
except ImportError as exc:  # the optional extra: say how to get it
    raise ImportError("a sweep on a cluster needs Ray: pip install -r requirements-cluster.txt (ray==2.60.0) "
                      "here and on every node") from exc

from qcore.cluster import BENCH, declare_hint
from qcore.cluster.address import probe

__all__ = ["connect", "cluster_info", "require_bench"]


def connect(address: str, timeout_s: float = 3.0) -> None:
    """Connect this process to the cluster at ``address`` (a no-op when already connected)."""
    if ray.is_initialized():
        return
    target = probe(address, timeout_s)
    qcore_dir = str(Path(__file__).resolve().parent.parent)
    ray.init(address=target, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"py_modules": [qcore_dir], "excludes": ["__pycache__"]})


def cluster_info(address: str) -> dict:
    """The alive nodes (id, host, CPUs, bench slots) and the totals."""
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        nodes.append({"node_id": n["NodeID"], "host": n.get("NodeManagerHostname", ""),
                      "ip": n.get("NodeManagerAddress", ""), "cpus": int(res.get("CPU", 0)),
                      "bench": int(res.get(BENCH, 0))})
    return {"address": address, "nodes": nodes, "cpus": sum(n["cpus"] for n in nodes),
            "bench_slots": sum(n["bench"] for n in nodes), "error": ""}


def require_bench(info: dict) -> None:
    """Refuse to time on a cluster with no ``qcore_bench`` slot, saying how to declare one."""
    if info["bench_slots"] < 1:
        raise ValueError(f"the cluster at {info['address']} has {len(info['nodes'])} node(s) and no {BENCH} slot, "
                         f"so no latency could be measured honestly and none is; {declare_hint()}")
