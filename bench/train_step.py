"""Baseline training step time with and without qcore.nets.fastconv. Not a test: prints medians and ratios.

    .venv/bin/python bench/train_step.py                          # resnet18, 32x32, batch 64 and 128
    .venv/bin/python bench/train_step.py --model mobilenet_v3_small --batch-size 128

For each batch size, two copies of the model (same initial weights, the recipe's memory format,
fused AdamW) take training steps on the same random batch, alternating in rounds within this process:
one with plain convolutions, one inside ``tiny_map_convs``. Medians of all rounds; the ratio is
plain / fast. The loss of the first step of both is printed too: the fast path is exact, so they agree
to float rounding (not for models with dropout, mobilenet_v3's head: the two draw different masks).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from qcore.nets.fastconv import tiny_map_convs
from qcore.nets.models import build_model
from qcore.nets.train import recipe_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", default="64,128", help="comma list")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = recipe_for(args.model, "fashion-mnist", image_size=args.image_size)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model} {args.image_size}px, "
          f"channels_last={recipe.channels_last}")
    for bs in (int(b) for b in args.batch_size.split(",")):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(bs, 3, args.image_size, args.image_size, generator=gen).contiguous(memory_format=fmt)
        y = torch.randint(0, 10, (bs,), generator=gen)
        variants = {}
        for name in ("plain", "fastconv"):
            torch.manual_seed(0)
            model = build_model(args.model, 10, args.image_size).to(memory_format=fmt).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
            variants[name] = (model, opt, [], [])
        with tiny_map_convs(variants["fastconv"][0]):  # patches only that copy
            for r in range(args.rounds + 1):  # round 0 warms up and is not counted
                for model, opt, times, losses in variants.values():
                    for _ in range(args.steps):
                        t0 = time.perf_counter()
                        loss = F.cross_entropy(model(x), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        if r:
                            times.append(time.perf_counter() - t0)
                        losses.append(float(loss.detach()))
        plain, fast = (statistics.median(variants[n][2]) * 1e3 for n in ("plain", "fastconv"))
        print(f"batch {bs:4d}: plain {plain:8.1f} ms/step  fastconv {fast:8.1f} ms/step  ratio {plain / fast:.2f}x  "
              f"epoch of 60,000 images {plain / bs * 60:.0f} s -> {fast / bs * 60:.0f} s  "
              f"(first loss {variants['plain'][3][0]:.6f} vs {variants['fastconv'][3][0]:.6f})")


if __name__ == "__main__":
    main()
