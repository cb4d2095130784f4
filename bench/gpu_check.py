"""A short sweep on CUDA that prints speed-ups over FP32 (not a test).

    .venv/bin/python bench/gpu_check.py [--model resnet18,vit_b_16] [--batch-size 32] [--input-size 224]
                                        [--sweep] [--compile]

``--sweep`` then runs the real CLI (``python -m qcore sweep --device cuda``) end to end on a small
generated image folder with a random-init checkpoint: the rows, statuses and skip reasons a user gets.

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

from qcore.backends import BackendUnavailable, resolve_backend
from qcore.metrics.measure import size_bytes, time_interleaved
from qcore.quant.spec import QuantSpec

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
    ap.add_argument("--model", default="resnet18,vit_b_16", help="comma-separated")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--budget", type=float, default=5.0)
    ap.add_argument("--sweep", action="store_true", help="also run the CLI sweep end to end on CUDA")
    ap.add_argument("--compile", action="store_true", help="also time torchao rows with FP32 and variant compiled")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to check here")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, torchvision {torchvision.__version__}")
    for name in args.model.split(","):
        print(f"\n== {name}, batch {args.batch_size}, {args.input_size}x{args.input_size}, random weights")
        check_kernels(name, args)
    return sweep_check(args) if args.sweep else 0


def check_kernels(name: str, args) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=1000).eval()
    for head in [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]:
        torch.nn.init.normal_(head.weight, std=0.02)  # ViT's head starts at zero: outputs would all be 0
    model = model.cuda()
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device="cuda")
    calib = [x[:8]]
    fp = size_bytes(model.state_dict())
    compiled_fp32 = None
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
            if args.compile and q.backend == "torchao":  # torchao's kernels are meant to run under torch.compile
                if compiled_fp32 is None:
                    compiled_fp32 = torch.compile(model)
                cq = torch.compile(q.model)
                with torch.inference_mode():
                    compiled_fp32(x), cq(x)
                lat = time_interleaved(
                    {"fp32": lambda f=compiled_fp32: f(x), "q": lambda f=cq: f(x)}, device="cuda", budget_s=args.budget
                )
                print(
                    f"{'   both torch.compile-d':58s} {'':21s} FP32 {lat['fp32'].p50:7.2f} ms -> "
                    f"{lat['q'].p50:7.2f} ms  speedup {lat['fp32'].p50 / lat['q'].p50:5.2f}x"
                )
        except BackendUnavailable as exc:
            print(f"{spec.label():58s} skipped: {exc}")
        except Exception as exc:  # report and go on: this is a check, not a test
            print(f"{spec.label():58s} ERROR {type(exc).__name__}: {str(exc)[:200]}")


def sweep_check(args) -> int:
    """``python -m qcore sweep --device cuda`` on a generated 3-class folder and a random checkpoint."""
    import tempfile

    from PIL import Image
    from safetensors.torch import save_file

    from qcore.cli import main as cli
    from qcore.data import folder_name

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        g = torch.Generator().manual_seed(0)
        for c in range(3):
            (root / f"class{c}").mkdir(parents=True)
            for i in range(40):
                pixels = (torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
        ckpt = Path(tmp) / "resnet18.safetensors"
        save_file(torchvision.models.resnet18(num_classes=3).state_dict(), str(ckpt))
        argv = ["sweep", "--model", "resnet18", "--dataset", folder_name(root), "--weights", str(ckpt),
                "--device", "cuda", "--precision", "fp32,fp16,bf16,int8,int4", "--mode", "static,dynamic,weight-only",
                "--granularity", "per-channel,per-group", "--group-size", "128", "--backend", "auto,torchao",
                "--batch-size", str(args.batch_size), "--input-size", str(args.input_size), "--calib-size", "32",
                "--eval-limit", "64", "--latency-budget", str(args.budget), "--no-store",
                "--out", str(Path(tmp) / "cuda.csv")]
        print("\n== python -m qcore " + " ".join(argv))
        rc = cli(argv)
        print(f"sweep exit status {rc}; CSV header: {(Path(tmp) / 'cuda.csv').read_text().splitlines()[0][:200]}")
        return rc


if __name__ == "__main__":
    sys.exit(main())
