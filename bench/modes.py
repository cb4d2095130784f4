"""Does a backend's speed depend on where its process put things in memory? (issue 30, item 3)

    .venv/bin/python bench/modes.py --model resnet18 --backend pt2e --batch-size 32 --processes 6

The same cached INT8 model (random weights: latency only) timed back to back in ``--processes`` fresh processes
with the kernel's address-space randomization as it is, then as many with it off for the process
(``setarch -R``: every process gets the same addresses), alternating the two so a drift of the machine hits both.
Each process builds (or loads from qcore's build cache) ``--backend``'s static INT8 model, applies qcore's
``keep_freed_memory`` (as every qcore timing process does), warms up, and times ``--seconds`` of calls. Printed: each
process's p50 and p90 (ms), then per condition the p50s' spread (max/min). If the spread is large with randomization
and small without it, the process-to-process "modes" come from addresses (cache-set or page aliasing between
buffers), not from the machine. ``--pinned`` adds a third condition: torch's OpenMP threads pinned one per core
(``OMP_PROC_BIND=close OMP_PLACES=cores``), randomization as it is. Run it on a quiet machine; the first process
builds the model (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(args) -> int:
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from qcore.backends import get_backend
    from qcore.env.malloc import keep_freed_memory
    from qcore.nets import models
    from qcore.quant.spec import QuantSpec

    keep_freed_memory()
    torch.manual_seed(0)
    fp32 = models.build_model(args.model, 10).eval()
    calib = [torch.randn(32, 3, 32, 32) for _ in range(2)]
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size)
    spec = QuantSpec("int8", granularity="per-channel", calibration="minmax", backend=args.backend)
    q = get_backend(args.backend).quantize(fp32, spec, calib, x, "cpu")
    times = []
    with torch.inference_mode():
        for _ in range(5):
            q(x)
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds or len(times) < 9:
            t0 = time.perf_counter()
            q(x)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(json.dumps({"p50": statistics.median(times), "p90": times[int(0.9 * (len(times) - 1))], "n": len(times),
                      "input_at": x.data_ptr() % 4096}), flush=True)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--backend", default="pt2e", help="a static INT8 backend: fx, pt2e, xnnpack")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--processes", type=int, default=6, help="per condition")
    ap.add_argument("--pinned", action="store_true", help="also: OpenMP threads pinned, one per core")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    me = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", args.model, "--backend", args.backend,
          "--batch-size", str(args.batch_size), "--input-size", str(args.input_size), "--threads", str(args.threads),
          "--seconds", str(args.seconds)]  # fmt: skip
    pinned = {**os.environ, "OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
    conditions = {"randomized": (me, None), "fixed (setarch -R)": (["setarch", "-R"] + me, None)}
    if args.pinned:
        conditions["threads pinned"] = (me, pinned)
    subprocess.run(me, cwd=ROOT, capture_output=True, check=True)  # the build (or cache load), not counted
    got: dict[str, list[dict]] = {c: [] for c in conditions}
    for i in range(args.processes):
        for name, (command, env) in conditions.items():
            out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            got[name].append(row)
            print(f"{name:20s} process {i + 1}: p50 {row['p50']:8.2f} ms  p90 {row['p90']:8.2f} ms  "
                  f"n {row['n']:4d}  input at page offset {row['input_at']}", flush=True)  # fmt: skip
    print(f"{args.model} {args.backend} batch {args.batch_size} at {args.input_size}x{args.input_size}, "
          f"{args.threads} threads:")  # fmt: skip
    for name, rows in got.items():
        p50 = [r["p50"] for r in rows]
        print(f"  {name:20s} p50s {', '.join(f'{v:.2f}' for v in p50)}; spread max/min {max(p50) / min(p50):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
