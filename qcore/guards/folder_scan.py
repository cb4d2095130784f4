"""Finding the images of a class-per-folder tree (``<root>/<class>/.../<image>``), with bounds.

A folder named on the command line can be anything: ``imagefolder:/`` once walked into ``/proc`` for 34 s
and died on a PermissionError. The walk here never follows links below a class folder, skips folders it
may not read (and counts them), refuses system folders (``/``, ``/proc``, ``/sys``, ``/dev``) at once, and
stops with a message past :attr:`ScanLimits.max_entries` entries, :attr:`ScanLimits.max_depth` folders
below a class, or :attr:`ScanLimits.max_seconds`: a tree that large is not a dataset of class folders.
Hidden files and folders (``.name``) and macOS's ``__MACOSX`` are ignored.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "MIN_IMAGES_PER_CLASS", "SYSTEM_FOLDERS", "ScanError", "ScanLimits", "Scan", "scan"]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MIN_IMAGES_PER_CLASS = 2  # a dataset's split puts one in the test set (evaluation), one in the training set
SYSTEM_FOLDERS = (Path("/"), Path("/proc"), Path("/sys"), Path("/dev"))


class ScanError(ValueError):
    """A folder that is not (or cannot be read as) a class-per-folder tree; the message says why."""


@dataclass(frozen=True)
class ScanLimits:
    max_entries: int = 2_000_000  # files and folders seen (ImageNet's training split is 1.3 million)
    max_depth: int = 8  # folders below a class folder
    max_seconds: float = 120.0


@dataclass
class Scan:
    """What a folder holds: image files per class folder (sorted; classes without images are ``empty``)."""

    root: Path
    classes: dict[str, list[Path]] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    other_files: int = 0  # files that are not images (by extension): ignored
    loose_images: int = 0  # images directly in the root, in no class folder
    unreadable_dirs: int = 0  # folders that could not be listed (permissions): skipped

    @property
    def images(self) -> int:
        return sum(len(v) for v in self.classes.values())


def _system(root: Path) -> bool:
    return any(root == s or (s != Path("/") and s in root.parents) for s in SYSTEM_FOLDERS)


def scan(root: Path, limits: ScanLimits = ScanLimits()) -> Scan:
    """Walk ``root``'s class folders within ``limits``; :class:`ScanError` names the folder and the problem."""
    root = Path(root).expanduser().resolve()
    if _system(root):
        raise ScanError(f"{root} is a system folder, not a dataset; give the folder whose sub-folders are the "
                        "classes: imagefolder:/path/to/data with /path/to/data/<class>/<image>")
    try:
        tops = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        raise ScanError(f"image folder {root} does not exist; expected <folder>/<class name>/<image files>") from None
    except NotADirectoryError:
        raise ScanError(f"image folder {root} is a file, not a folder; expected <folder>/<class name>/<image "
                        "files>") from None
    except PermissionError:
        raise ScanError(f"image folder {root} cannot be read (permission denied)") from None
    out, seen, start = Scan(root), len(tops), time.monotonic()

    def over(where: Path) -> None:
        if seen > limits.max_entries or time.monotonic() - start > limits.max_seconds:
            what = (f"more than {limits.max_entries:,} entries" if seen > limits.max_entries
                    else f"{limits.max_seconds:g} s of listing")
            raise ScanError(f"{root} is not a class-per-folder tree of images: after {what} (last in {where}) "
                            "the walk stopped; point imagefolder: at the folder whose sub-folders are the classes")

    def failed(_exc: OSError) -> None:
        out.unreadable_dirs += 1

    for top in tops:
        if top.name.startswith((".", "__MACOSX")):
            continue
        try:
            is_dir = top.is_dir()  # a link to a folder counts as a class folder; below it, links are not followed
        except OSError:
            out.unreadable_dirs += 1
            continue
        if not is_dir:
            if Path(top.name).suffix.lower() in IMAGE_EXTENSIONS:
                out.loose_images += 1
            continue
        files: list[Path] = []
        class_dir = Path(top.path)
        for here, dirs, names in os.walk(class_dir, onerror=failed):
            here_p = Path(here)
            depth = len(here_p.relative_to(class_dir).parts)
            seen += len(dirs) + len(names)
            over(here_p)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if depth >= limits.max_depth and dirs:
                raise ScanError(f"{class_dir} has folders more than {limits.max_depth} levels deep ({here_p}); "
                                f"{root} does not look like a class-per-folder tree of images")
            for n in names:
                if n.startswith("."):
                    continue
                if Path(n).suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(here_p / n)
                else:
                    out.other_files += 1
        if files:
            out.classes[top.name] = sorted(files)
        else:
            out.empty.append(top.name)
    return out
