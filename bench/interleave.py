"""What timing INT8 interleaved with FP32 eager (a sweep's protocol) does to INT8's p50 (issue 30, item 3).

    .venv/bin/python bench/interleave.py --model resnet18 --backend pt2e [--keepmem]

Builds ``--backend``'s static INT8 model (random weights: latency only; 64 random 32x32 calibration images), then
per batch size at 224x224 on 2 threads: the INT8 model's calls back to back ("alone"), then FP32 eager and INT8
in a sweep's alternating order (A B, B A, A B, ...), each INT8 call filed by what ran just before it (FP32, or
itself). Prints the p50 of each. Run it several times: a process can stay in a fast or a slow mode for its whole
life (docs/benchmarks.md, issue 30), so one run says little about another. ``--keepmem`` applies
``qcore.env.malloc.keep_freed_memory`` first (qcore's timing processes do). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--backend", default="pt2e", help="a static INT8 backend: fx, pt2e, xnnpack")
    ap.add_argument("--batch-size", default="1,32")
    ap.add_argument("--seconds", type=float, default=6.0, help="timing per batch size and protocol")
    ap.add_argument("--keepmem", action="store_true")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    if args.keepmem:
        from qcore.env.malloc import keep_freed_memory

        print(keep_freed_memory())
    from qcore.backends import get_backend
    from qcore.nets import models
    from qcore.quant.spec import QuantSpec

    fp32 = models.build_model(args.model, 10).eval()
    torch.manual_seed(0)
    calib = [torch.randn(32, 3, 32, 32) for _ in range(2)]
    spec = QuantSpec("int8", granularity="per-channel", calibration="minmax", backend=args.backend)
    q = get_backend(args.backend).quantize(fp32, spec, calib, calib[0][:1], "cpu")
    for bs in (int(b) for b in args.batch_size.split(",")):
        x = torch.randn(bs, 3, 224, 224)
        a, b = (lambda x=x: fp32(x)), (lambda x=x: q(x))
        with torch.inference_mode():
            for _ in range(5):
                a(), b()
            alone, after = [], {"A": [], "B": []}
            start = time.perf_counter()
            while time.perf_counter() - start < args.seconds or len(alone) < 7:
                alone.append(_ms(b))
            start, i, prev = time.perf_counter(), 0, "B"
            while time.perf_counter() - start < args.seconds or len(after["A"]) < 7:
                for c in ("AB" if i % 2 == 0 else "BA"):  # the sweep's alternation
                    if c == "A":
                        _ms(a)
                    else:
                        after[prev].append(_ms(b))
                    prev = c
                i += 1
        med = statistics.median
        print(f"{args.model} {args.backend} batch {bs}: alone p50 {med(alone):.2f} ms; interleaved with FP32 eager: "
              f"after FP32 {med(after['A']):.2f} ms (n={len(after['A'])}), after itself {med(after['B']):.2f} ms "
              f"(n={len(after['B'])}), all {med(after['A'] + after['B']):.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
