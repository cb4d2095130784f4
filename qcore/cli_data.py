"""The data and model subcommands of ``python -m qcore``: ``train``, ``fetch-data``, ``models``, ``datasets``.

Each handler takes the argparse namespace and returns an exit code: 0 done, 1 could not (offline,
missing data), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO


class ProgressBar:
    """``[#####.....]  45%  epoch 2/3, loss 0.410, ETA 3m10s`` on one refreshed line of a terminal; on a
    pipe or a log file, one plain line every 10% or 30 seconds instead."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width, self.tty = width, self.stream.isatty()
        self.last_draw, self.last_pct, self.shown = 0.0, -10, False

    def __call__(self, done: int, total: int, message: str) -> None:
        now, frac = time.monotonic(), done / max(total, 1)
        pct = int(frac * 100)
        if self.tty:
            if now - self.last_draw < 0.2 and done < total:
                return
            filled = int(frac * self.width)
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {pct:3d}%  {message}\033[K")
            self.shown = True
        else:
            if pct < self.last_pct + 10 and now - self.last_draw < 30 and done < total:
                return
            self.stream.write(f"{pct:3d}%  {message}\n")
            self.last_pct = pct
        self.stream.flush()
        self.last_draw = now

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_train(args: argparse.Namespace) -> int:
    from qcore import data, models, train

    try:
        recipe = train.recipe_for(args.model, args.dataset, args.epochs, image_size=args.image_size,
                                  seed=args.seed)
        models.check_input_size(args.model, recipe.image_size)
        cached = None if args.force else train.find_baseline(args.model, args.dataset, recipe)
        if cached is None:
            print(f"training {args.model} on {args.dataset}: {recipe.epochs:g} epoch(s), {recipe.optimizer} "
                  f"lr {recipe.lr:g}, batch {recipe.batch_size}, {recipe.image_size}px, seed {recipe.seed} "
                  f"(recipe {recipe.key()})", file=sys.stderr)
        bar = ProgressBar()
        try:
            path = train.train_baseline(args.model, args.dataset, recipe=recipe, progress=bar,
                                        force=args.force)
        finally:
            bar.close()
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was saved", 130)
    except (data.DatasetError, models.ModelInputError) as exc:
        return _fail(str(exc), 1 if isinstance(exc, data.DatasetError) else 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    meta = train.baseline_meta(path)
    state = "cached" if cached is not None else "trained"
    print(f"{state}: {path}")
    print(f"test accuracy {meta['test_accuracy']:.2%} on {meta['test_images']} images; "
          f"training took {meta['train_seconds']:.0f} s on {meta.get('threads', '?')} thread(s)")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from qcore import data

    try:
        print(data.fetch(args.name))
    except data.DatasetError as exc:
        return _fail(str(exc), 1)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from qcore import models

    names = [n for n in models.list_models() if not args.filter or args.filter in n]
    print(f"{'model':<20} {'params':>10} {'GFLOPs':>8} {'input':>6} {'min':>5}")
    for name in names:
        info = models.model_info(name)
        params = f"{info.params / 1e6:.1f}M" if info.params else "?"
        gflops = f"{info.gflops:.2f}" if info.gflops is not None else "?"
        print(f"{name:<20} {params:>10} {gflops:>8} {info.default_input_size or '?':>6} "
              f"{info.min_input_size or '?':>5}")
    print("GFLOPs as torchvision's weights metadata lists them: at the input size, 1000-class head.")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from qcore import data

    folder = data.find_fashion_mnist()
    fm = f"found in {folder}" if folder else "not found. " + data.how_to_get("fashion-mnist")
    cifar = data.subdir("datasets") / "cifar-10-batches-py"
    cf = f"found in {cifar}" if cifar.is_dir() else "downloaded through torchvision on first use (online)"
    print(f"fashion-mnist          70,000 28x28 grey images, 10 classes: {fm}")
    print(f"cifar10                60,000 32x32 colour images, 10 classes: {cf}")
    print("imagefolder:<path>     any <path>/<class>/<image> tree; ImageNet synset folders map to pretrained "
          "models' classes")
    return 0


def add_subcommands(subparsers) -> None:
    """Add ``train``, ``fetch-data``, ``models`` and ``datasets`` to an argparse subparsers object (numbers
    checked against :data:`qcore.limits.LIMITS`)."""
    from qcore.limits import argparse_type as limited

    p = subparsers.add_parser("train", help="train (or find cached) the baseline of a model on a dataset")
    p.add_argument("--model", required=True, help="a torchvision classifier, e.g. resnet18 (see 'models')")
    p.add_argument("--dataset", required=True, help="fashion-mnist, cifar10 or imagefolder:<path>")
    p.add_argument("--epochs", type=limited("epochs"), default=None, help="default: the model family's recipe")
    p.add_argument("--seed", type=limited("seed"), default=0)
    p.add_argument("--image-size", type=limited("image_size"), default=None,
                   help="default: the dataset's (32, or 224 for image folders)")
    p.add_argument("--force", action="store_true", help="train again even when a cached baseline exists")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("fetch-data", help="download a dataset through torchvision (needs internet)")
    p.add_argument("name", choices=["fashion-mnist", "cifar10"])
    p.set_defaults(func=cmd_fetch)

    p = subparsers.add_parser("models", help="list torchvision classifiers with parameters and GFLOPs")
    p.add_argument("--filter", default="", help="only names containing this text")
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("datasets", help="list datasets and where they are found")
    p.set_defaults(func=cmd_datasets)
