"""Issue 19's figures: a 12-spec sweep on a two-node local Ray cluster against the local worker. Not a test.

    .venv/bin/python bench/cluster.py                       # random resnet18 checkpoint, 500 images
    .venv/bin/python bench/cluster.py --weights baseline    # the cached trained baseline (top-1 that means something)

Starts a head and a worker node on this machine (loopback only, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set before
Ray is imported; ``--cpus`` CPUs and one ``qcore_bench`` slot each), then runs the same 12 specs (plus the FP32
baseline) twice through :func:`qcore.service.worker.execute_job`: on the local worker and on the cluster, in a throwaway
database. Prints

- wall time of each run and their ratio;
- per-task overhead: the round trip of an empty Ray task, the first fetch of the sweep's data on a node,
  and (cluster wall - local wall) / tasks;
- top-1 agreement: specs whose top-1 is identical on both runs (same images, seeds and weights);
- scaling on paper for 20 models x 12 specs, from the measured per-spec costs, and where the single driver's
  SQLite commits (measured here, ms per row) would become the limit.

On a shared 2-core machine two "nodes" share the same two cores: the wall-time ratio shows overhead, not
speed-up; latencies are not comparable either. Run it on a quiet machine for the record.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: loopback only

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SPECS = [  # 12 specs that every CPU backend here runs
    dict(precision="int8", mode="dynamic", granularity="per-channel"),
    dict(precision="int8", mode="dynamic", granularity="per-tensor"),
    dict(precision="int8", mode="static", granularity="per-channel", calibration="minmax"),
    dict(precision="int8", mode="static", granularity="per-tensor", calibration="minmax"),
    dict(precision="int8", mode="static", granularity="per-channel", calibration="mse"),
    dict(precision="int8", mode="static", granularity="per-channel", calibration="moving-average"),
    dict(precision="int8", mode="static", granularity="per-channel", calibration="minmax", scheme="symmetric"),
    dict(precision="int8", mode="weight-only", granularity="per-channel", calibration="minmax"),
    dict(precision="int4", mode="weight-only", granularity="per-group", calibration="minmax"),
    dict(precision="int4", mode="weight-only", granularity="per-group", calibration="mse"),
    dict(precision="fp16"),
    dict(precision="bf16"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="", help="default: a random-init resnet18 checkpoint made here")
    ap.add_argument("--eval-limit", type=int, default=500)
    ap.add_argument("--calib-size", type=int, default=64)
    ap.add_argument("--latency-budget", type=float, default=1.0)
    ap.add_argument("--cpus", type=int, default=1, help="CPUs of each of the two nodes")
    args = ap.parse_args()

    import ray
    import torch
    import torchvision
    from ray.cluster_utils import Cluster

    from qcore.quant.spec import QuantSpec
    from qcore.runs.store import Store, spec_key
    from qcore.runs.sweep import SweepConfig
    from qcore.service.worker import execute_job

    tmp = Path(tempfile.mkdtemp(prefix="qcore-cluster-bench-"))
    weights = args.weights
    if not weights:
        torch.manual_seed(0)
        weights = str(tmp / "resnet18-random.pt")
        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
    config = SweepConfig(weights=weights, calib_size=args.calib_size, eval_limit=args.eval_limit,
                         latency_budget_s=args.latency_budget, fp32_compiled=False)
    specs = [QuantSpec(**d).to_dict() for d in SPECS]
    store = Store(tmp / "runs.sqlite")

    node = {"node_ip_address": "127.0.0.1", "num_cpus": args.cpus, "resources": {"qcore_bench": 1}}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    try:
        t = time.perf_counter()
        local = execute_job(store, store.job(store.submit_job(config.to_dict(), specs)))
        local_s = time.perf_counter() - t
        t = time.perf_counter()
        remote = execute_job(store, store.job(store.submit_job(config.to_dict(), specs)), cluster=cluster.address)
        cluster_s = time.perf_counter() - t

        @ray.remote(num_cpus=0)
        def noop(x=None):
            return 0

        trips = []
        for _ in range(30):
            t = time.perf_counter()
            ray.get(noop.remote())
            trips.append(time.perf_counter() - t)
        blob = ray.put(torch.zeros(64 << 20, dtype=torch.uint8))  # 64 MiB, the order of a resnet18 and its data
        t = time.perf_counter()
        ray.get(noop.remote(blob))
        fetch_s = time.perf_counter() - t

        row = local[-1]
        commits = []
        for _ in range(50):
            row.run_id = row.run_id[:6] + os.urandom(3).hex()
            t = time.perf_counter()
            store.add_result(row)
            commits.append(time.perf_counter() - t)
    finally:
        ray.shutdown()
        cluster.shutdown()

    tasks = 2 * len(SPECS) + 1
    by_key = {spec_key(r.spec.to_dict()): r for r in local}
    same = [r for r in remote if by_key[spec_key(r.spec.to_dict())].top1 == r.top1]
    worst = max(abs(by_key[spec_key(r.spec.to_dict())].top1 - r.top1) for r in remote if r.top1 is not None)
    print(f"12-spec sweep (+FP32), resnet18 32 px, {config.eval_limit} eval images, {config.calib_size} calibration "
          f"images, {config.latency_budget_s:g} s latency budgets; weights {weights}")
    print(f"wall time: local worker {local_s:.1f} s, two-node cluster {cluster_s:.1f} s "
          f"(cluster / local {cluster_s / local_s:.2f}x) [measured on a loaded 2-core machine]")
    print(f"per-task overhead: empty task round trip {statistics.median(trips) * 1e3:.1f} ms (median of 30); "
          f"64 MiB object fetched by a task {fetch_s * 1e3:.0f} ms; (cluster - local) / {tasks} tasks "
          f"{(cluster_s - local_s) / tasks:+.2f} s")
    print(f"top-1 agreement: {len(same)}/{len(remote)} rows identical; largest difference {worst:.3f} points")
    print(f"retries: {sum(r.retries for r in remote)}; latency nodes: "
          f"{sorted({r.host + ':' + r.node_id[:8] for r in remote})}")

    per_spec = local_s / (len(SPECS) + 1)
    commit_ms = statistics.median(commits) * 1e3
    prep = next(r for r in local if r.spec.is_reference)
    print(f"\nscaling on paper, 20 models x 12 specs = 240 specs, at {per_spec:.1f} s per spec measured here "
          f"(one node = this machine), the driver's data preparation serial per model:")
    for n in (1, 2, 4, 8, 16, 32):
        print(f"  {n:>2} node(s): about {240 * per_spec / n / 60:6.1f} min of spec work + the driver's preparation "
              f"of 20 models")
    rate = 1e3 / commit_ms
    print(f"SQLite: one committed row takes {commit_ms:.2f} ms here (median of 50), so the single driver can "
          f"store about {rate:.0f} rows/s; rows arrive at nodes / {per_spec:.1f} s, so the writes become the limit "
          f"past about {rate * per_spec:.0f} nodes")
    print(f"(FP32 row: {prep.notes[0] if prep.notes else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
