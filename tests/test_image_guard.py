"""qcore.guards.image_guard: sizes checked from the header, decoding kept small, the same pixels as before."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from qcore.guards import image_guard
from tests import crafted as c


def test_open_image_refuses_by_the_header_and_names_the_file(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(c.png(8000, 6000))  # 48 MP in 60 KB
    with pytest.raises(image_guard.ImageTooLarge, match=r"^big.png is 8000 x 6000 pixels \(48 MP\); images above 40"):
        image_guard.open_image(path)
    path.write_bytes(c.png(6000, 6000))
    with image_guard.open_image(path) as im:
        assert im.size == (6000, 6000)


def _old(im, size, resize, resample):
    """What imagefolder did before: resize the whole image, then crop the centre."""
    w, h = im.size
    scale = resize / min(w, h)
    full = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
    left, top = (full.size[0] - size) // 2, (full.size[1] - size) // 2
    return np.asarray(full.crop((left, top, left + size, top + size)), dtype=int)


@pytest.mark.parametrize("resample", [Image.BILINEAR, Image.BICUBIC], ids=["bilinear", "bicubic"])
def test_resize_crop_matches_resize_then_crop(resample, monkeypatch):
    rng = np.random.default_rng(0)
    for w, h, size, resize in ((50, 40, 16, 18), (400, 90, 32, 37), (37, 300, 224, 256), (640, 480, 224, 232)):
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        assert np.array_equal(np.asarray(image_guard.resize_crop(im, size, resize, resample)),
                              _old(im, size, resize, resample))  # exact below the size limit
        monkeypatch.setattr(image_guard, "FULL_RESIZE_MAX_PIXELS", 0)  # the crop-region path, on the same images
        diff = np.abs(np.asarray(image_guard.resize_crop(im, size, resize, resample), dtype=int)
                      - _old(im, size, resize, resample))
        assert diff.max() <= 3 and diff.mean() < 0.5, (w, h, diff.max(), diff.mean())
        monkeypatch.undo()


def test_an_extreme_shape_is_resized_without_building_the_whole():
    im = Image.open(io.BytesIO(c.png(3_000_000, 1)))
    im.load()
    out = image_guard.resize_crop(im, 32, 37, Image.BILINEAR)  # the whole would be 111 million x 37 pixels
    assert out.size == (32, 32)


def test_shrink_averages_blocks_and_keeps_alpha_exactly_as_pillow(monkeypatch):
    monkeypatch.setattr(image_guard, "SHRINK_ABOVE_PIXELS", 0)
    rng = np.random.default_rng(1)
    rgba = Image.fromarray(rng.integers(0, 255, (777, 1001, 4), dtype=np.uint8), "RGBA")
    out = image_guard.shrink(rgba, 100)  # factor 3, a strip at a time
    assert out.size == (334, 259) and np.array_equal(np.asarray(out), np.asarray(rgba.reduce(3)))
    grey16 = Image.open(io.BytesIO(c.png(900, 900, 0, depth=16)))
    assert image_guard.shrink(grey16, 100).size == (225, 225)  # 16-bit: converted first, then averaged
    small = Image.new("RGB", (300, 300))
    assert image_guard.shrink(small, 100) is small  # not twice the side needed: left as it is
