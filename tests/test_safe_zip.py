"""qcore.guards.safe_zip: the end record read before zipfile, names normalised, entries planned, bytes counted."""

from __future__ import annotations

import io
import zipfile

import pytest

from qcore.guards import safe_zip
from qcore.guards.safe_zip import ZipLimits, ZipRefused
from tests import crafted as c


def _real_zip(names: dict[str, bytes], comment: bytes = b"", zip64: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in names.items():
            with zf.open(name, "w", force_zip64=zip64) as fh:
                fh.write(content)
        zf.comment = comment
    return buf.getvalue()


@pytest.mark.parametrize("zip64", [False, True], ids=["classic", "zip64"])
def test_end_record_of_archives_python_writes(zip64):
    blob = _real_zip({"a/1.png": b"x" * 100, "b/2.png": b"y"}, comment=b"PK\x05\x06 in a comment", zip64=zip64)
    d = safe_zip.check_directory(io.BytesIO(blob), ZipLimits())
    assert d.entries == 2 and d.archive_bytes == len(blob) and d.start == d.offset


def test_data_prepended_to_an_archive_shifts_the_directory_as_zipfile_does():
    blob = b"#!/bin/sh\nexit 0\n" + _real_zip({"a/1.png": b"x"})  # a self-extracting archive's shape
    zf, d = safe_zip.open_checked(io.BytesIO(blob), ZipLimits())
    assert d.start == d.offset + 17 and zf.namelist() == ["a/1.png"]


def test_the_directory_is_counted_record_by_record():
    blob = c.many_entries(70_000, wrap=True)  # the classic end record's 16-bit count says 4,464
    assert safe_zip.read_directory(io.BytesIO(blob)).entries == 70_000 % 65536
    with pytest.raises(ZipRefused, match=r"lists more than 60,000 entries in its directory \(its end record says 4,464"
                       ):
        safe_zip.check_directory(io.BytesIO(blob), ZipLimits(max_entries=60_000))
    safe_zip.check_directory(io.BytesIO(blob), ZipLimits(max_entries=70_000))
    damaged = bytearray(blob)
    damaged[damaged.rfind(b"PK\x01\x02", 0, len(blob) - 3000)] = ord("X")
    with pytest.raises(ZipRefused, match="has no record where record"):
        safe_zip.check_directory(io.BytesIO(bytes(damaged)), ZipLimits())


def test_names_are_normalised_and_checked():
    blob = c.zip_bytes([c.Entry("pets\\cats\\1.png", b"a"), c.Entry("./pets/./dogs//2.png", b"b"),
                        c.Entry("pets/dogs/", b""), c.Entry("__MACOSX/pets/._1.png", b"fork")])
    zf, d = safe_zip.open_checked(io.BytesIO(blob), ZipLimits())
    assert [parts for _, parts in safe_zip.plan(zf, d, ZipLimits())] == [("pets", "cats", "1.png"),
                                                                        ("pets", "dogs", "2.png")]
    deep = c.zip_bytes([c.Entry("/".join(["d"] * 40) + "/x.png", b"a")])
    zf, d = safe_zip.open_checked(io.BytesIO(deep), ZipLimits())
    with pytest.raises(ZipRefused, match="is 41 folders deep; at most 32"):
        safe_zip.plan(zf, d, ZipLimits())


def test_ratio_applies_above_its_floor_and_to_the_whole_archive():
    small = c.zip_bytes([c.Entry("a/z.bmp", c.deflate_zeros(c.MiB), 8, c.crc_zeros(c.MiB), c.MiB)])
    zf, d = safe_zip.open_checked(io.BytesIO(small), ZipLimits())
    assert len(safe_zip.plan(zf, d, ZipLimits())) == 1  # 1 MiB of zeros: under the floor, allowed
    many = c.zip_bytes([c.Entry(f"a/{i}.bmp", c.deflate_zeros(c.MiB), 8, c.crc_zeros(c.MiB), c.MiB)
                        for i in range(40)])
    zf, d = safe_zip.open_checked(io.BytesIO(many), ZipLimits())
    with pytest.raises(ZipRefused, match=r"would inflate \d+ times \([\d,]+ to 41,943,040 bytes\); at most 100"):
        safe_zip.plan(zf, d, ZipLimits())


def test_extract_counts_what_is_inflated_and_never_writes_outside(tmp_path):
    blob = _real_zip({"a/1.png": b"x" * 5000, "b/2.png": b"y" * 5000})
    limits = ZipLimits(max_total_bytes=8000)
    zf, d = safe_zip.open_checked(io.BytesIO(blob), ZipLimits())
    entries = safe_zip.plan(zf, d, ZipLimits())
    for name in ("ok", "capped"):
        (tmp_path / name).mkdir()
    assert safe_zip.extract(zf, entries, tmp_path / "ok", ZipLimits()) == 10_000
    assert (tmp_path / "ok" / "b" / "2.png").read_bytes() == b"y" * 5000
    with pytest.raises(ZipRefused, match="inflates past 8,000 bytes"):
        safe_zip.extract(zf, entries, tmp_path / "capped", limits)
