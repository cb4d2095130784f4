"""The data and model subcommands of ``python -m qcore``: ``train``, ``fetch-data``, ``models``, ``datasets``.

Each handler takes the argparse namespace and returns an exit code: 0 done, 1 could not (offline,
missing data), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from qcore.cli.progress import ProgressBar

__all__ = ["cmd_train", "cmd_fetch", "cmd_models", "cmd_datasets", "dataset_help", "add_subcommands"]


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: the cached baseline of a model on a dataset, trained now (with a progress bar) if missing."""
    from qcore import data
    from qcore.nets import models, train, weights

    try:
        recipe = train.recipe_for(args.model, args.dataset, args.epochs, image_size=args.image_size,
                                  seed=args.seed)
        models.check_input_size(args.model, recipe.image_size)
        cached = None if args.force else train.find_baseline(args.model, args.dataset, recipe)
        if cached is None:
            print(f"training {args.model} on {args.dataset}: {recipe.epochs:g} epoch(s), {recipe.optimizer} "
                  f"lr {recipe.lr:g}, batch {recipe.batch_size}, {recipe.image_size}px, seed {recipe.seed} "
                  f"(recipe {recipe.key()})", file=sys.stderr)
            bundle = weights.load_dataset_for(args.model, args.dataset, recipe.image_size)  # as a sweep loads it
            bar = ProgressBar(eta=False)  # the training's messages carry their own ETA
            try:
                path = train.train_baseline(args.model, bundle, recipe=recipe, progress=bar, force=args.force)
            finally:
                bar.close()
        else:
            path = cached
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
    """``fetch-data``: download a built-in dataset through torchvision."""
    from qcore import data

    try:
        print(data.fetch(args.name))
    except data.DatasetError as exc:
        return _fail(str(exc), 1)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``models``: every torchvision classifier with its parameters, GFLOPs and input sizes."""
    from qcore.nets import models

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
    """``datasets``: the built-in datasets (from the registry) and where each is found."""
    from qcore import data

    for name in data.list_datasets():
        info = data.get_dataset(name)
        folder = info.find()
        print(f"{name:<22} {info.summary}: {f'found in {folder}' if folder else info.missing}")
    print(f"{data.folder_name('<path>'):<22} any <path>/<class>/<image> tree; ImageNet synset folders map to "
          "pretrained models' classes")
    return 0


def dataset_help() -> str:
    """The ``--dataset`` help: the registry's names, then the folder form."""
    from qcore.data.registry import list_datasets

    return ", ".join(list_datasets()) + " or imagefolder:<path>"


def add_subcommands(subparsers) -> None:
    """Add ``train``, ``fetch-data``, ``models`` and ``datasets`` to an argparse subparsers object (numbers
    checked against :data:`qcore.guards.limits.LIMITS`)."""
    from qcore.guards.limits import argparse_type as limited

    p = subparsers.add_parser("train", help="train (or find cached) the baseline of a model on a dataset")
    p.add_argument("--model", required=True, help="a torchvision classifier, e.g. resnet18 (see 'models')")
    p.add_argument("--dataset", required=True, help=dataset_help())
    p.add_argument("--epochs", type=limited("epochs"), default=None, help="default: the model family's recipe")
    p.add_argument("--seed", type=limited("seed"), default=0)
    p.add_argument("--image-size", type=limited("image_size"), default=None,
                   help="default: the dataset's (32, or 224 for image folders)")
    p.add_argument("--force", action="store_true", help="train again even when a cached baseline exists")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("fetch-data", help="download a dataset through torchvision (needs internet)")
    from qcore.data.registry import list_datasets

    p.add_argument("name", choices=list_datasets())
    p.set_defaults(func=cmd_fetch)

    p = subparsers.add_parser("models", help="list torchvision classifiers with parameters and GFLOPs")
    p.add_argument("--filter", default="", help="only names containing this text")
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("datasets", help="list datasets and where they are found")
    p.set_defaults(func=cmd_datasets)
