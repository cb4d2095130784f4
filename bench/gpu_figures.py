"""Issue 27's figures on a CUDA GPU, in one go under a time limit (not a test): p50 by CUDA events, speed-up over the
fastest FP32, size, and top-1 on the shipped Fashion-MNIST baseline against CPU INT8.

    .venv/bin/python bench/gpu_figures.py [--limit 420] [--budget 2] [--models resnet18,resnet50,...] [--no-top1]

For each model and batch size (resnet18, resnet50 and mobilenet_v3_small at batch 1 and 32, vit_b_16 at batch 32;
224x224), one interleaved timing of: FP32 eager, FP32 with TF32, FP32 torch.compile'd (TF32 on), TensorRT FP16,
TensorRT INT8 (ModelOpt, symmetric, per-channel weights, min-max), torchao INT8 dynamic and INT4 weight-only (both
compiled, as qcore runs them on a GPU). FP8 has no qcore spec yet: its row says so. Random-init weights for the
timings (speed does not depend on the values); top-1 comes from the CLI sweep of the shipped mobilenet_v3_small
baseline on CUDA (TensorRT FP16 and INT8) and on the CPU (qcore's INT8), so the two INT8 top-1s can be compared.
Every row that is slower than the fastest FP32 prints the backend's own notes beside it (why). Whatever the time
limit leaves undone is printed as not measured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision

from qcore.backends import quantize
from qcore.backends.gpu_compile import fp32_variants
from qcore.env.gpu import ability_text, detect_gpu, error_text, formats
from qcore.metrics.measure import size_bytes, time_interleaved
from qcore.quant.spec import QuantSpec

warnings.filterwarnings("ignore")
POINTS = [("resnet18", 1), ("resnet18", 32), ("resnet50", 1), ("resnet50", 32), ("mobilenet_v3_small", 1),
          ("mobilenet_v3_small", 32), ("vit_b_16", 32)]
SPECS = {
    "TensorRT FP16": QuantSpec("fp16", backend="tensorrt"),
    "TensorRT INT8": QuantSpec("int8", scheme="symmetric", backend="tensorrt"),
    "torchao INT8 dynamic": QuantSpec("int8", mode="dynamic", scheme="symmetric", backend="torchao"),
    "torchao INT4 weight-only": QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=128,
                                          backend="torchao"),
}


def point(name: str, batch: int, args) -> list[str]:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=1000).eval()
    for head in [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]:
        torch.nn.init.normal_(head.weight, std=0.02)  # ViT's head starts at zero
    model = model.cuda()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    calib = [torch.randn(8, 3, 224, 224, device="cuda") for _ in range(4)]
    fns, notes, sizes, why = {"FP32 eager": lambda: model(x)}, [], {"FP32 eager": size_bytes(model.state_dict())}, {}
    extra = fp32_variants(model, x, notes)
    fns.update({"FP32 TF32": extra["fp32 tf32"]})
    if "fp32 compiled" in extra:
        fns["FP32 compiled (TF32)"] = extra["fp32 compiled"]
    rows = []
    for label, spec in SPECS.items():
        try:
            q = quantize(model, spec, calib, x, "cuda")
        except Exception as exc:  # a refusal or a failed build is a row, and the rest go on
            rows.append(f"| {name} | {batch} | {label} | not run: {error_text(exc, batch)[:300]} | | | |")
            torch.cuda.empty_cache()
            continue
        fns[label] = lambda q=q: q(x)
        sizes[label], why[label] = size_bytes(q.artifact), "; ".join(q.notes)[:300]
    with torch.inference_mode():
        lat = time_interleaved(fns, device="cuda", budget_s=args.budget)
    best = min(v.p50 for k, v in lat.items() if k.startswith("FP32"))
    out = []
    for label, v in lat.items():
        speed = best / v.p50
        size = f"{sizes[label] / sizes['FP32 eager']:.3f}x" if label in sizes else ""
        reason = why.get(label, "") if speed < 1.0 else ""
        out.append(f"| {name} | {batch} | {label} | {v.p50:.3f} | {speed:.2f}x | {size} | {reason} |")
    if "fp8" in formats(detect_gpu().capability):
        out.append(f"| {name} | {batch} | TensorRT FP8 | not run: qcore's specs have no FP8 precision yet | | | |")
    return out + rows + [f"<!-- {name} batch {batch}: {'; '.join(notes)} -->"]


def top1(args) -> None:
    """The shipped mobilenet_v3_small baseline swept on CUDA (TensorRT) and on the CPU: the rows' top-1."""
    with tempfile.TemporaryDirectory() as tmp:
        for device, backend in (("cuda", "tensorrt"), ("cpu", "auto")):
            out = Path(tmp) / f"{device}.csv"
            argv = [sys.executable, "-m", "qcore", "sweep", "--model", "mobilenet_v3_small", "--device", device,
                    "--precision", "fp32,fp16,int8" if device == "cuda" else "fp32,int8", "--scheme", "symmetric",
                    "--backend", backend, "--latency-budget", "0.5", "--no-store", "--out", str(out)]
            print("\n$ " + " ".join(argv[1:]), flush=True)
            subprocess.run(argv, timeout=max(30, args.deadline - time.monotonic()), check=False)
            if out.exists():
                import csv

                for row in csv.DictReader(out.open()):
                    print(f"{device:4s} {row.get('spec', ''):48s} {row.get('backend', ''):9s} top1 "
                          f"{row.get('top1', '')}  status {row.get('status', '')} {row.get('error', '')[:120]}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=float, default=420.0, help="seconds for everything; what is left is listed")
    ap.add_argument("--budget", type=float, default=2.0, help="timing seconds per model and batch size")
    ap.add_argument("--models", default="", help="comma-separated subset of the models")
    ap.add_argument("--no-top1", action="store_true")
    args = ap.parse_args()
    args.deadline = time.monotonic() + args.limit
    gpu = detect_gpu()
    if gpu is None:
        print("no CUDA GPU visible: nothing to measure here")
        return 0
    print(f"{ability_text(gpu)}\ntorch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"{gpu.to_dict()}")
    print("\n| model | batch | variant | p50 ms | vs fastest FP32 | size | why slower (the row's notes) |\n"
          "|---|---|---|---|---|---|---|")
    wanted = set(filter(None, args.models.split(",")))
    for i, (name, batch) in enumerate(POINTS):
        if wanted and name not in wanted:
            continue
        if time.monotonic() > args.deadline - (120 if not args.no_top1 else 0):
            print("not measured (time limit): " + ", ".join(f"{n} batch {b}" for n, b in POINTS[i:]))
            break
        try:
            print("\n".join(point(name, batch, args)), flush=True)
        except Exception as exc:  # out of memory at this batch: named, and the next point goes on
            print(f"| {name} | {batch} | all | {error_text(exc, batch)[:300]} | | | |", flush=True)
        torch.cuda.empty_cache()
    if not args.no_top1:
        top1(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
