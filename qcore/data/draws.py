"""Calibration draws: which training images calibrate each repetition of a spec, and fixed lists.

A post-training-quantized model depends on the images it was calibrated on. To show how much, a
sweep can calibrate each spec ``K`` times on *disjoint* samples of ``calib_size`` training images
(:func:`draw_indices`) and evaluate each on the same evaluation images; the spread of top-1 over the
draws is the part of a point that is luck. Draw ``k`` has seed ``seed + k``: it takes the first
``calib_size`` images of a permutation seeded ``seed + k`` that no earlier draw took, so draw 0 is the
sample a single-draw sweep uses, and ``K`` draws need ``K * calib_size`` training images.

>>> draws = draw_indices(10, 3, 3, seed=0)
>>> [len(d) for d in draws], len(set(sum(draws, [])))   # 3 draws of 3 images, 9 different ones
([3, 3, 3], 9)

A fixed list (``--calib-list FILE``, as MLPerf publishes one) names the calibration images instead:
one per line, a training-split index (``0`` to ``n_train - 1``) or, for an image folder, the path of
one of its training images (:func:`read_calib_list`). A list is one draw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from qcore.data.base import DatasetBundle, DatasetError, batches

__all__ = ["draw_indices", "check_draws", "read_calib_list", "train_paths", "calibration_draws"]

MAX_LIST_LINES = 1_000_000  # a list longer than this is not a calibration list


def check_draws(n_train: int, calib_size: int, draws: int) -> None:
    """Raise :class:`DatasetError` naming the value and the limit when the draws cannot be disjoint."""
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise DatasetError(f"calib_draws must be at least 1, not {draws!r}")
    if draws * calib_size > n_train:
        most = n_train // calib_size
        raise DatasetError(
            f"calib_draws={draws} disjoint draws of calib_size={calib_size} images need {draws * calib_size:,} "
            f"training images; the training split has {n_train:,}, enough for at most {most} draw(s) of "
            f"{calib_size} (or fewer images per draw)"
        )


def draw_indices(n_train: int, calib_size: int, draws: int, seed: int) -> list[list[int]]:
    """``draws`` disjoint sorted lists of ``calib_size`` training indices; draw ``k`` seeded ``seed + k``."""
    check_draws(n_train, calib_size, draws)
    taken = torch.zeros(n_train, dtype=torch.bool)
    out = []
    for k in range(draws):
        perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed + k))
        pick = perm[~taken[perm]][:calib_size]
        taken[pick] = True
        out.append(pick.sort().values.tolist())
    return out


def train_paths(train: Dataset) -> list[Path] | None:
    """The file of each training image, for datasets read from files (image folders); None otherwise."""
    files = getattr(train, "files", None)
    return [Path(f) for f in files] if files is not None else None


def read_calib_list(path: str | Path, n_train: int, paths: list[Path] | None = None) -> tuple[list[int], str]:
    """The training indices a list file names, and the file's SHA-256 (for the manifest).

    Each non-empty line (``#`` starts a comment) is an index into the training split or, when ``paths``
    (the training files of an image folder) is given, one of those files. Unknown indices and paths that
    are missing or not in the training split are errors naming the line, the value and what is allowed.
    """
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"calib_list: the file {p} does not exist") from None
    except OSError as exc:
        raise DatasetError(f"calib_list: cannot read {p} ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"calib_list: {p} is not UTF-8 text; give one index or path per line") from None
    by_path = {str(f.resolve()): i for i, f in enumerate(paths)} if paths is not None else None
    out: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        if len(out) >= MAX_LIST_LINES:
            raise DatasetError(f"calib_list: {p} names more than {MAX_LIST_LINES:,} images")
        out.append(_list_item(item, n, p, n_train, by_path))
    if not out:
        raise DatasetError(f"calib_list: {p} names no image; give one training index or path per line")
    dupes = len(out) - len(set(out))
    if dupes:
        raise DatasetError(f"calib_list: {p} names {dupes} image(s) more than once; each line must be different")
    return sorted(out), hashlib.sha256(raw).hexdigest()


def _list_item(item: str, line: int, p: Path, n_train: int, by_path: dict[str, int] | None) -> int:
    if item.lstrip("-").isdigit():
        i = int(item)
        if not 0 <= i < n_train:
            raise DatasetError(f"calib_list: line {line} of {p}: index {i} is not in the training split; "
                               f"allowed: 0 to {n_train - 1}")
        return i
    if by_path is None:
        raise DatasetError(f"calib_list: line {line} of {p}: {item!r} is not an index, and this dataset is not "
                           f"read from files; allowed: training indices 0 to {n_train - 1}")
    f = Path(item).expanduser()
    if not f.is_absolute():
        f = p.parent / f  # relative paths are relative to the list file
    if not f.exists():
        raise DatasetError(f"calib_list: line {line} of {p}: the file {f} does not exist")
    i = by_path.get(str(f.resolve()))
    if i is None:
        raise DatasetError(f"calib_list: line {line} of {p}: {f} is not one of the {len(by_path):,} training "
                           "images of this folder (test images and unreadable files cannot calibrate)")
    return i


def calibration_draws(bundle: DatasetBundle, calib_size: int, draws: int, seed: int, calib_list: str | None,
                      batch_size: int) -> tuple[list[list[torch.Tensor]], list[int], dict]:
    """Each draw's calibration batches, the draws' seeds, and the manifest entries that reproduce them.

    Draw 0 is the sample a one-draw sweep calibrates on; a ``calib_list`` replaces the draws (one draw, no
    seed; the manifest keeps the file's path and SHA-256).
    """
    n_train = len(bundle.train)
    if calib_list is not None:
        indices, sha = read_calib_list(calib_list, n_train, train_paths(bundle.train))
        chosen, seeds = [indices], []
        extra: dict = {"calib_list": {"path": calib_list, "sha256": sha, "images": len(indices)}}
    else:
        chosen = draw_indices(n_train, calib_size, draws, seed)
        seeds, extra = [seed + k for k in range(len(chosen))], {}
    out = [[x for x, _ in batches(Subset(bundle.train, idx), batch_size)] for idx in chosen]
    extra["calib_draws"] = [{"seed": s, "indices": idx} for s, idx in zip(seeds or [None], chosen)]
    return out, seeds, extra
