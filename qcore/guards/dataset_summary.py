"""What an image folder holds, said before anything runs: classes, images per class, what was skipped.

:func:`summarize` reads every image's header (its size, against :data:`qcore.guards.image_guard.MAX_IMAGE_PIXELS`)
and, for folders of up to :data:`FULL_CHECK_IMAGES` images, decodes each one (JPEGs at a reduced scale),
so that a damaged file is counted now rather than at Run; larger folders are fully decoded when loaded.
The :attr:`Summary.problems` are the reasons a folder cannot be a classifier's dataset (fewer than two
classes with images, a class with fewer than two readable images: the split needs one to calibrate on
and one to evaluate); the app refuses such an upload at once and keeps Run disabled.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qcore.guards import folder_scan, image_guard

__all__ = ["FULL_CHECK_IMAGES", "MIN_IMAGES_PER_CLASS", "Summary", "summarize", "problems", "thumbnails"]

FULL_CHECK_IMAGES = 5_000
MIN_IMAGES_PER_CLASS = folder_scan.MIN_IMAGES_PER_CLASS


@dataclass
class Summary:
    classes: dict[str, int] = field(default_factory=dict)  # readable images per class folder
    unreadable: int = 0  # image files that could not be read (headers; whole files when fully_checked)
    too_large: int = 0  # images over the pixel limit
    other_files: int = 0  # files that are not images (by extension): ignored
    empty_folders: list[str] = field(default_factory=list)
    loose_images: int = 0
    fully_checked: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(self.classes.values())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Summary:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def text(self) -> str:
        """One line a person reads: ``2 classes, 118 images (cats 60, dogs 58); 3 unreadable files skipped``."""
        per = ", ".join(f"{c} {n}" for c, n in list(self.classes.items())[:8])
        more = f", ... {len(self.classes) - 8} more" if len(self.classes) > 8 else ""
        parts = [f"{len(self.classes)} class(es), {self.images} image(s)" + (f" ({per}{more})" if per else "")]
        if self.unreadable:
            parts.append(f"{self.unreadable} unreadable file(s) skipped")
        if self.too_large:
            parts.append(f"{self.too_large} image(s) over {image_guard.MAX_IMAGE_PIXELS / 1e6:g} MP skipped")
        if self.other_files:
            parts.append(f"{self.other_files} non-image file(s) ignored")
        if self.empty_folders:
            parts.append(f"folder(s) without images ignored: {', '.join(self.empty_folders[:4])}")
        if not self.fully_checked:
            parts.append("headers checked; images are fully decoded when loaded")
        return "; ".join(parts)


def _readable(path: Path, full: bool) -> str:
    """``"ok"``, ``"too large"`` or ``"unreadable"``, decoding at most a small draft."""
    try:
        with image_guard.open_image(path) as im:
            if full:
                im.draft("RGB", (64, 64))
                im.load()
    except image_guard.ImageTooLarge:
        return "too large"
    except Exception:  # Pillow raises many kinds for damaged files
        return "unreadable"
    return "ok"


def summarize(root: Path) -> Summary:
    """The :class:`Summary` of a class-per-folder tree (raises ``folder_scan.ScanError`` for a bad folder)."""
    scan = folder_scan.scan(Path(root))
    full = scan.images <= FULL_CHECK_IMAGES
    s = Summary(other_files=scan.other_files, empty_folders=list(scan.empty), loose_images=scan.loose_images,
                fully_checked=full)
    for name, files in scan.classes.items():
        ok = 0
        for f in files:
            state = _readable(f, full)
            ok += state == "ok"
            s.unreadable += state == "unreadable"
            s.too_large += state == "too large"
        if ok:
            s.classes[name] = ok
        else:
            s.empty_folders.append(name)
    s.problems = problems(s)
    return s


def problems(s: Summary) -> list[str]:
    """Why a folder with this summary cannot be a classifier's dataset (empty when it can)."""
    if not s.classes:
        found = []
        if s.other_files:
            found.append(f"{s.other_files} file(s) that are not images")
        if s.unreadable or s.too_large:
            found.append(f"{s.unreadable + s.too_large} image file(s) that cannot be used")
        if s.loose_images:
            found.append(f"{s.loose_images} image(s) outside any class folder")
        what = f" (it has {', '.join(found)})" if found else ""
        return [f"it holds no readable images in class folders{what}; expected <class>/<image> entries, e.g. "
                f"cats/1.jpg and dogs/2.jpg, with {', '.join(sorted(folder_scan.IMAGE_EXTENSIONS))} images"]
    out = []
    if len(s.classes) < 2:
        (only,) = s.classes
        out.append(f"it holds one class folder with images ({only!r}); a classifier needs at least two "
                   "(e.g. cats/1.jpg and dogs/2.jpg)")
    few = [f"{c!r} ({n})" for c, n in s.classes.items() if n < MIN_IMAGES_PER_CLASS]
    if few:
        out.append(f"class(es) {', '.join(few[:6])} have fewer than {MIN_IMAGES_PER_CLASS} readable images; each "
                   "class needs one to calibrate on and one to evaluate")
    return out


def thumbnails(root: Path, n: int = 6, side: int = 72) -> list[tuple[str, bytes]]:
    """Up to ``n`` small PNGs, one class after another: ``(class, png bytes)``."""
    from PIL import Image, ImageOps

    scan = folder_scan.scan(Path(root))
    queues = {c: list(files[:n]) for c, files in scan.classes.items()}
    out: list[tuple[str, bytes]] = []
    while len(out) < n and any(queues.values()):
        for c, files in queues.items():
            if not files or len(out) >= n:
                continue
            path = files.pop(0)
            try:
                with image_guard.open_image(path) as im:
                    im.draft("RGB", (side * 2, side * 2))
                    im.load()
                    im = image_guard.shrink(im, side)
                    thumb = ImageOps.exif_transpose(im).convert("RGB")
                thumb.thumbnail((side, side), Image.BILINEAR)
                buf = io.BytesIO()
                thumb.save(buf, "PNG")
            except Exception:  # the summary counts it as unreadable already
                continue
            out.append((c, buf.getvalue()))
    return out
