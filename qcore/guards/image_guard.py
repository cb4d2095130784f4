"""Images from strangers: the size is read from the header and checked before any pixel is decoded.

A 140 KB PNG can declare 12000 x 12000 pixels and decode to 144 MB (to 826 MB more through the
conversions after it); Pillow only refuses above 178 megapixels (twice its 89 MP warning). A classifier
here sees at most 1024 pixels a side, so :data:`MAX_IMAGE_PIXELS` (40 MP: a 7300 x 5500 photo, larger
than any phone's default) is plenty, and larger images are skipped and counted.

Decoding stays bounded below that too. :func:`shrink` box-averages an image to about twice the side the
classifier needs before any colour conversion (a 36 MP photo becomes a 0.6 MP one, so the copies that
follow cost little), and :func:`resize_crop` resizes only the centre crop's source region (Pillow's
``box``): the same pixels as resizing the whole image and cropping after (each output pixel's filter is
centred at the same source coordinate, with the same support), without ever building the resized whole.
That matters for extreme shapes: a 1 x 30,000,000 image resized to a short side of 37 would be 1.1
billion pixels wide.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MAX_IMAGE_PIXELS", "SHRINK_ABOVE_PIXELS", "FULL_RESIZE_MAX_PIXELS", "ImageTooLarge", "open_image",
           "shrink", "resize_crop"]

MAX_IMAGE_PIXELS = 40_000_000
SHRINK_ABOVE_PIXELS = 12_000_000  # a 4000 x 3000 photo is decoded and converted at full size, as before
FULL_RESIZE_MAX_PIXELS = 16_000_000  # up to this, the whole image is resized and then cropped, as before
_UNREDUCIBLE = {"1": "L", "P": None, "PA": "RGBA", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}


class ImageTooLarge(ValueError):
    """An image with more pixels than :data:`MAX_IMAGE_PIXELS` (or than Pillow accepts); skipped and counted."""


def open_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS):
    """``PIL.Image.open(path)`` with its size checked; nothing is decoded yet (the caller loads and closes it)."""
    from PIL import Image

    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{Path(path).name} has more pixels than Pillow accepts ({exc}); images above "
                            f"{max_pixels / 1e6:g} megapixels are skipped") from exc
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageTooLarge(f"{Path(path).name} is {w} x {h} pixels ({w * h / 1e6:.0f} MP); images above "
                            f"{max_pixels / 1e6:g} megapixels are skipped")
    return im


def shrink(im, resize: int):
    """Box-average ``im`` (loaded, over :data:`SHRINK_ABOVE_PIXELS`) by the largest integer factor that keeps
    its short side at least ``2 * resize``; palette and 16-bit images are converted first (Pillow cannot
    average them)."""
    factor = min(im.size) // (2 * resize)
    if factor < 2 or im.size[0] * im.size[1] <= SHRINK_ABOVE_PIXELS:
        return im
    if im.mode in _UNREDUCIBLE:
        target = _UNREDUCIBLE[im.mode] or ("RGBA" if "transparency" in im.info else "RGB")
        im = im.convert(target)
    if im.mode not in ("RGBA", "LA"):
        return im.reduce(factor)
    # Pillow premultiplies alpha on a copy of the whole image first (another 144 MB for 36 MP): a strip
    # at a time instead. Strips start at multiples of the factor, so the blocks averaged are the same.
    from PIL import Image

    w, h = im.size
    out = Image.new(im.mode, (-(-w // factor), -(-h // factor)))
    rows = factor * max(1, (8 * 2**20) // (w * 4 * factor))  # about 8 MB of source a strip
    for y in range(0, h, rows):
        out.paste(im.crop((0, y, w, min(h, y + rows))).reduce(factor), (0, y // factor))
    out.info = dict(im.info)
    return out


def resize_crop(im, size: int, resize: int, resample):
    """Resize ``im`` so its short side is ``resize`` and take the centred ``size`` x ``size`` crop, computing
    only the crop. With ``W = max(size, round(w * s))`` (``s = resize / min(w, h)``), output pixel ``i`` of
    the crop is centred at ``(left + i + 0.5) * w / W`` in the source, as in the full resize. Up to
    :data:`FULL_RESIZE_MAX_PIXELS` the whole image is resized (exactly as before); beyond, only the crop's
    source region is: like Pillow's full resize it filters rows first, then columns (on a crop of the rows
    the column filter reads), so the pixels are the same up to a level or two of rounding."""
    w, h = im.size
    scale = resize / min(w, h)
    full_w, full_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (full_w - size) // 2, (full_h - size) // 2
    sx, sy = w / full_w, h / full_h
    if full_w * full_h <= FULL_RESIZE_MAX_PIXELS:
        return im.resize((full_w, full_h), resample).crop((left, top, left + size, top + size))
    x0, x1, y0, y1 = left * sx, (left + size) * sx, top * sy, (top + size) * sy
    if resample == 0:  # nearest: one pass, no filter support
        return im.resize((size, size), resample, box=(x0, y0, x1, y1))
    reach = {2: 1.0, 3: 2.0}.get(int(resample), 3.0) * max(sy, 1.0) + 2  # the column filter's support, in rows
    r0, r1 = max(0, int(y0 - reach)), min(h, int(y1 + reach) + 1)
    rows = im.crop((0, r0, w, r1)) if (r0, r1) != (0, h) else im
    rows = rows.resize((size, r1 - r0), resample, box=(x0, 0, x1, r1 - r0))
    return rows.resize((size, size), resample, box=(0, y0 - r0, size, y1 - r0))
