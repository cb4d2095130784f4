"""Sweeps on a Ray cluster: the same specs, measured on many machines, one timing per machine at a time.

Nothing here imports Ray: :mod:`qcore.cluster.driver` (and the task module it loads) does, and only a sweep
given a cluster address imports it (``sweep --cluster ADDRESS``, or ``QCORE_RAY_ADDRESS`` for the app's
worker). Without an address the local worker runs the sweep as before and Ray is never imported.

The split (:mod:`qcore.cluster.driver`): every spec's accuracy work (calibrate, quantize, evaluate) is a
task of one CPU that Ray packs anywhere; its latency is a task that claims the custom resource
``qcore_bench`` (one slot per node, declared when the node starts), so no two timings share a machine, and
sets torch's thread count to that node's CPUs. The process that calls Ray (the worker, or the CLI) is the
only one that writes the run database. docs/cluster.md says how to start nodes.
"""

from __future__ import annotations

import os

from qcore.cluster.address import ClusterUnreachable, check_address, probe
from qcore.cluster.status import read_snapshot, write_snapshot

__all__ = ["ENV", "BENCH", "configured_address", "check_address", "probe", "ClusterUnreachable", "read_snapshot",
           "write_snapshot", "declare_hint"]

ENV = "QCORE_RAY_ADDRESS"  # the app's worker runs its sweeps on this cluster when set
BENCH = "qcore_bench"  # the custom resource of the latency tasks: one slot per node


def configured_address() -> str | None:
    """The cluster the app's worker uses (``$QCORE_RAY_ADDRESS``), checked; None when unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return check_address(value) if value else None


def declare_hint() -> str:
    """How to give a node its one timing slot (the same words in errors, the CLI and docs/cluster.md)."""
    return (f"start each node that may time with one {BENCH} slot: ray start --head --resources='{{\"{BENCH}\": 1}}'"
            f" (a worker node: ray start --address=HEAD:6379 --resources='{{\"{BENCH}\": 1}}'); on Kubernetes, "
            f"rayStartParams resources: '\"{{\\\"{BENCH}\\\": 1}}\"' in each KubeRay worker group")
