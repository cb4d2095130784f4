"""A short sweep on CUDA that prints speed-ups over FP32 (not a test).

    .venv/bin/python bench/gpu_check.py [--model resnet18] [--batch-size 32] [--input-size 224]

FP16 and BF16 run natively on the GPU; INT8 static convolutions have no CUDA kernel in torch
(skipped, with the reason); torchao's INT8 dynamic and weight-only kernels run the Linear layers
(vit_b_16 is the interesting model for those); INT4 weight-only runs through torchao's tinygemm
where installed, and qcore's packed weight-only path (dequantized, simulated) otherwise.
Random-init weights and random images: this checks the kernels and their speed, not accuracy.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qcore.backends import BackendUnavailable, resolve_backend  # noqa: E402
from qcore.measure import size_bytes, time_interleaved  # noqa: E402
from qcore.spec import QuantSpec  # noqa: E402

warnings.filterwarnings("ignore")

SPECS = [
    QuantSpec("fp16", device="cuda"),
    QuantSpec("bf16", device="cuda"),
    QuantSpec("int8", device="cuda"),
    QuantSpec("int8", mode="dynamic", scheme="symmetric", backend="torchao", device="cuda"),
    QuantSpec("int8", mode="weight-only", scheme="symmetric", backend="torchao", device="cuda"),
    QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=128, backend="torchao", device="cuda"),
    QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=64, device="cuda"),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--budget", type=float, default=5.0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to check here")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, num_classes=1000).eval().cuda()
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device="cuda")
    calib = [x[:8]]
    fp = size_bytes(model.state_dict())
    for spec in SPECS:
        try:
            backend = resolve_backend(spec, "cuda")
            q = backend.quantize(model, spec, calib, x[:1], "cuda")
            with torch.inference_mode():
                err = ((q(x).float() - model(x)).norm() / model(x).norm()).item()
            lat = time_interleaved(
                {"fp32": lambda: model(x), "q": lambda q=q: q(x)}, device="cuda", budget_s=args.budget
            )
            print(
                f"{spec.label():58s} {q.backend:11s} {q.kernel:9s} FP32 {lat['fp32'].p50:7.2f} ms -> "
                f"{lat['q'].p50:7.2f} ms  speedup {lat['fp32'].p50 / lat['q'].p50:5.2f}x  "
                f"size {size_bytes(q.artifact) / fp:.3f}x  rel.err {err:.4f}  "
                f"layers {q.quantized_layers}/{q.total_layers}"
            )
        except BackendUnavailable as exc:
            print(f"{spec.label():58s} skipped: {exc}")
        except Exception as exc:  # report and go on: this is a check, not a test
            print(f"{spec.label():58s} ERROR {type(exc).__name__}: {str(exc)[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
