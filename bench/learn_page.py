"""How long the Learn page takes to draw a layer, cold and after a slider move. Not a test: prints seconds.

    .venv/bin/python bench/learn_page.py                      # resnet18 on Fashion-MNIST, the cached baseline
    .venv/bin/python bench/learn_page.py --weights random     # a random-weights resnet18 (no baseline needed)
    .venv/bin/python bench/learn_page.py --model mobilenet_v3_small --layers features.1.block.0.0,classifier.3

It calls the page's own cached helpers (``ui.learn_data``, the functions the page calls, in the order it
calls them) outside Streamlit. For each layer and kind: **cold** is everything the page computes when
that layer is first opened (capture, calibrators, histogram, every section), **bits** and **method** are a
slider move and a method change afterwards (only the parts that depend on them), **again** is the same
page drawn once more (all cached). The browser's own drawing of the charts is not included. Run it on a
quiet machine for the page's own figures (the issue's target: charts for a layer within a couple of
seconds on 2 cores); ``--threads 1`` and ``--threads 2`` side by side, with and without another process
busy on the cores, show why the page computes with one thread (``ui.learn_data.THREADS``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def draw(data, key, method: str, bits: int, symmetric: bool, pct: float) -> None:
    """Everything pages/learn.py asks ui.learn_data for, in its order."""
    stats = data.stats(key)
    data.method_ranges(key, bits, symmetric, pct)
    data.histogram(key)
    data.affine(key, method, bits, symmetric, pct)
    data.by_method(key, bits, symmetric, pct)
    data.staircase(key, method, bits, symmetric, pct)
    data.worked(key, method, bits, symmetric, pct)
    data.sqnr_curves(key, symmetric, pct)
    data.schemes(key, method, bits, pct)
    for s in (True, False):
        data.staircase(key, method, bits, s, pct)
    data.channels(key, method, bits, symmetric, pct)
    if key[4] == "weights":
        data.costs(key, method, bits, symmetric, pct)
    else:
        data.batch_ranges(key, method, bits, symmetric, pct)
    del stats


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--weights", default="baseline", help="baseline, pretrained, a checkpoint, or 'random'")
    ap.add_argument("--layers", default="", help="comma list (default: the page's default layer and the last)")
    ap.add_argument("--threads", type=int, default=0,
                    help="intra-op threads of the page's computations (default: the page's own, ui.learn_data.THREADS)")
    args = ap.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)

    import torch

    from qcore.learn import capture
    from ui import learn_data as data

    if args.threads:
        data.THREADS = args.threads

    weights = args.weights
    if weights == "random":
        import torchvision
        from safetensors.torch import save_file

        torch.manual_seed(0)
        weights = str(Path(tempfile.mkdtemp()) / f"{args.model}-random.safetensors")
        save_file(torchvision.models.get_model(args.model, num_classes=10).state_dict(), weights)
    t_load = timed(lambda: data.load(args.model, args.dataset, weights))
    loaded, problem = data.load(args.model, args.dataset, weights)
    if loaded is None:
        sys.exit(f"cannot load {args.model} with weights {args.weights}: {problem}")
    layers = capture.list_layers(loaded.model)
    names = args.layers.split(",") if args.layers else [capture.default_layer(layers), layers[-1].name]
    print(f"{args.model} on {args.dataset}, weights {loaded.loaded.weights}, {data.THREADS} thread(s) "
          "(--threads 2 to compare)")
    print(f"load model and dataset: {t_load:.2f} s (once per server)")
    print(f"{'layer':<28} {'kind':<12} {'cold s':>7} {'bits s':>7} {'method s':>8} {'again s':>8}")
    for name in names:
        for kind in ("weights", "activations"):
            key = (args.model, args.dataset, weights, name, kind, kind == "weights")
            other = "mse" if kind == "weights" else "entropy"
            cold = timed(lambda key=key: draw(data, key, "minmax", 4, False, 99.99))
            bits = timed(lambda key=key: draw(data, key, "minmax", 5, False, 99.99))
            method = timed(lambda key=key, other=other: draw(data, key, other, 5, False, 99.99))
            again = timed(lambda key=key, other=other: draw(data, key, other, 5, False, 99.99))
            print(f"{name:<28} {kind:<12} {cold:7.2f} {bits:7.2f} {method:8.2f} {again:8.3f}")


if __name__ == "__main__":
    main()
