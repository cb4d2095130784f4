"""Many stored results for the Runs page's bench and tests (``bench/runs_page.py``, ``tests/test_runs_query.py``):
sweeps of a few models, datasets and specs, each an FP32 row and the rows measured against it, about one in ten
flagged busy, a few errors, every row the size a measured one has (200 latency samples, a manifest, notes).
Rows are inserted through the store (one transaction), nothing is measured: the numbers are made up and never
leave the temporary home they are made for."""

from __future__ import annotations

import random
from pathlib import Path

__all__ = ["MODELS", "DATASETS", "specs", "fill"]

MODELS = ("resnet18", "mobilenet_v3_small", "mobilenet_v2", "efficientnet_b0", "regnet_x_400mf")
DATASETS = ("fashion-mnist", "cifar10", "imagefolder:/srv/uploads/pets")
_MANIFEST = {"qcore": "0.9.0", "python": "3.11.9", "torch": "2.5.1+cpu", "torchvision": "0.20.1",
             "cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "gpu": "",
             "cpu_flags": ["avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "fma", "f16c"],
             "threads": 2, "quantized_engine": "x86", "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
             "calib_size": 512, "eval_size": 2000, "seed": 0, "input_shape": "1x3x224x224"}  # fmt: skip


def specs() -> list:
    """FP32 first, then quantized specs of every precision, granularity and calibration (their labels differ)."""
    from qcore.quant.spec import FP32, QuantSpec

    out = [FP32, QuantSpec("fp16", backend="float"), QuantSpec("bf16", backend="float")]
    for gran in ("per-tensor", "per-channel"):
        for cal in ("minmax", "percentile", "entropy", "mse"):
            for scheme in ("symmetric", "asymmetric"):
                out.append(QuantSpec("int8", granularity=gran, calibration=cal, scheme=scheme, mode="static"))
    out.append(QuantSpec("int8", granularity="per-channel", mode="dynamic"))
    out += [QuantSpec("int4", granularity="per-group", group_size=g, mode="weight-only", scheme="symmetric")
            for g in (32, 64, 128)]
    return out


def fill(path: Path | str, n: int = 10_000, seed: int = 0) -> list[str]:
    """Store ``n`` results in the run database at ``path`` (made if missing); returns their run ids, newest
    first (as the store lists them)."""
    from qcore.metrics.result import Result
    from qcore.runs.store import Store

    rng = random.Random(seed)
    pool, rows, t = specs(), [], 1_700_000_000.0
    while len(rows) < n:
        sweep = f"{rng.getrandbits(40):010x}"
        model, dataset = rng.choice(MODELS), rng.choice(DATASETS)
        fp32_ms, base = rng.uniform(5, 40), None
        for spec in [pool[0], *rng.sample(pool[1:], rng.randint(3, 12))][: n - len(rows)]:
            t += rng.choice((0.0, 0.5, 3.0))  # some rows share a second: the order falls back to insertion
            speed = 1.0 if base is None else rng.uniform(0.8, 4.0)
            status = "ok" if base is None or rng.random() > 0.05 else rng.choice(("error", "skipped"))
            samples = [round(fp32_ms / speed * rng.uniform(0.95, 1.3), 4) for _ in range(200)]
            r = Result(
                spec, model, dataset, backend="fx", kernel="x86", top1=round(rng.uniform(60, 93), 2),
                agreement=round(rng.uniform(90, 100), 1), latency_ms_p50=fp32_ms / speed,
                latency_ms_p90=fp32_ms / speed * 1.2, fp32_latency_ms_p50=fp32_ms, speedup=speed,
                size_bytes=int(rng.uniform(2e6, 50e6)), size_ratio=rng.uniform(0.2, 1.0), status=status,
                error="a made-up failure" if status == "error" else "", latency_samples_ms=samples,
                manifest=dict(_MANIFEST), sweep_id=sweep, created_at=t, timed_calls=200,
                baseline_run_id="" if base is None else base.run_id, eval_images=2000,
                busy="load 3.1 on the machine, above the 2 threads timed with" if rng.random() < 0.1 else "",
                notes=["weights calibrated on 512 training images, evaluated on 2000 test images"],
            )  # fmt: skip
            if base is None:
                base, r.top1_delta = r, 0.0
            else:
                r.top1_delta = r.top1 - base.top1
            rows.append(r)
    Store(path).add_new_results(rows)
    return [r.run_id for r in reversed(rows)]
