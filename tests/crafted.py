"""Hostile files, made small and fast inside the tests (nothing large is committed or written to disk).

A "1 GiB" deflate stream of zeros is about 1 MB: one 1 MiB block is compressed once, ended with a full
flush (which makes it independent of what came before) and repeated. PNGs of any declared size are made
the same way (their pixels are zeros). Zip archives are written by hand here, so that a directory can
say what the attack needs it to say (sizes, counts, methods, names).
"""

from __future__ import annotations

import io
import re
import resource
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MiB = 2**20


# -- memory: the peak of one case, above the process's memory when it started ----------------------

def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def _can_reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


RSS = _can_reset_peak()


def peak_mb(fn: Callable[[], object]) -> tuple[object, float]:
    """Run ``fn``; return ``(its result or the exception it raised, peak MB above the start)``.

    The peak is the larger of two measures, each reset before the case:
    - the growth of the resident set's high-water mark (``VmHWM``, reset to the current resident size
      through ``/proc/self/clear_refs``; Linux): every allocation the case touched, Python, torch, Pillow
      and zlib alike, except what reuses memory freed earlier but still resident (memory reserved and
      never touched is not resident either, and costs nothing);
    - tracemalloc's peak: Python's allocations (bytes, numpy arrays, ...) whether or not they reused
      freed memory.
    Where ``clear_refs`` is not available only the second is taken."""
    tracemalloc.start()
    if RSS:
        Path("/proc/self/clear_refs").write_text("5")
        start = _status("VmRSS")
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001  (the case's refusal is what is looked at)
        out = exc
    rss = _status("VmHWM") - start if RSS else 0
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, max(0, rss, traced) / MiB


def rusage_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- deflate streams of zeros ------------------------------------------------------------------------

@lru_cache(maxsize=8)
def deflate_zeros(n: int) -> bytes:
    """A raw deflate stream that inflates to ``n`` zero bytes (about n / 1030 bytes long)."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = block.compress(b"\0" * MiB) + block.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    rest = tail.compress(b"\0" * (n % MiB)) + tail.flush()
    return one * (n // MiB) + rest


@lru_cache(maxsize=8)
def crc_zeros(n: int) -> int:
    crc, chunk = 0, b"\0" * MiB
    for _ in range(n // MiB):
        crc = zlib.crc32(chunk, crc)
    return zlib.crc32(b"\0" * (n % MiB), crc)


def zlib_zeros(n: int) -> bytes:
    """A zlib stream (header, deflate, Adler-32) of ``n`` zeros: Adler-32 of zeros is ``(n mod 65521) << 16 | 1``."""
    return b"\x78\xda" + deflate_zeros(n) + struct.pack(">I", ((n % 65521) << 16) | 1)


# -- zip archives written by hand ----------------------------------------------------------------------

@dataclass
class Entry:
    name: str | bytes
    data: bytes = b""  # as stored in the archive (compressed when method != 0)
    method: int = 0
    crc: int | None = None
    size: int | None = None  # declared uncompressed size
    attr: int = 0  # external attributes (unix mode << 16)
    flags: int = 0


def deflated(name: str, content: bytes) -> Entry:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Entry(name, c.compress(content) + c.flush(), 8, zlib.crc32(content), len(content))


def zip_bytes(entries: list[Entry], *, end: bytes | None = None) -> bytes:
    """A zip archive of ``entries``; ``end`` replaces the end record (to make it lie)."""
    out, central = io.BytesIO(), io.BytesIO()
    for e in entries:
        name = e.name.encode() if isinstance(e.name, str) else e.name
        crc = zlib.crc32(e.data) if e.crc is None and e.method == 0 else (e.crc or 0)
        size = len(e.data) if e.size is None else e.size
        offset = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, e.flags, e.method, 0, 0x21, crc, len(e.data),
                              size, len(name), 0) + name + e.data)  # fmt: skip
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 0x0314 if e.attr else 20, 20, e.flags,
                                  e.method, 0, 0x21, crc, len(e.data), size, len(name), 0, 0, 0, 0, e.attr,
                                  offset) + name)  # fmt: skip
    cd = central.getvalue()
    tail = end if end is not None else struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                                                   len(cd), out.tell(), 0)  # fmt: skip
    return out.getvalue() + cd + tail


def end_record(entries: int, cd_size: int, cd_offset: int, disk: int = 0) -> bytes:
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", disk, disk, min(entries, 0xFFFF), min(entries, 0xFFFF),
                       min(cd_size, 0xFFFFFFFF), min(cd_offset, 0xFFFFFFFF), 0)  # fmt: skip


def zip64_end(entries: int, cd_size: int, at: int, cd_offset: int = 0) -> bytes:
    """A zip64 end record (at offset ``at``), its locator and a classic end record that defers to it."""
    rec = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, cd_size, cd_offset)
    loc = struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)
    return rec + loc + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)


def many_entries(n: int, wrap: bool = False) -> bytes:
    """A real archive of ``n`` empty files (a few tens of MB for hundreds of thousands), with a zip64 end
    record when ``n`` needs one, or (``wrap``) a classic one whose 16-bit count says ``n mod 65536``."""
    local, central, offset = [], [], 0
    for i in range(n):
        name = f"c{i % 2}/{i:07d}".encode()
        head = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0,
                                   len(name), 0, 0, 0, 0, 0, offset) + name)  # fmt: skip
        local.append(head)
        offset += len(head)
    cd = b"".join(central)
    body = b"".join(local) + cd
    if not wrap and n >= 0xFFFF:
        return body + zip64_end(n, len(cd), len(body), offset)
    return body + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n & 0xFFFF, n & 0xFFFF, len(cd), offset, 0)


def sparse_flood(path: Path, entries: int = 4_000_000, record: int = 55) -> Path:
    """A sparse file (no disk blocks but the last) the size of a real directory of ``entries`` records,
    ending in an end record that lists them all: what a 219 MB zip of 4 million entries looks like."""
    cd_size = entries * record
    with open(path, "wb") as fh:
        fh.write(zip_bytes([Entry("a/0.png", b"")], end=b"")[:35])  # a first local header, as real zips start
        fh.truncate(cd_size)
        fh.seek(cd_size)
        fh.write(zip64_end(entries, cd_size, cd_size) if entries >= 0xFFFF else end_record(entries, cd_size, 0))
    return path


# -- images ------------------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, color: int = 0, depth: int = 8, text_bomb: int = 0) -> bytes:
    """A PNG of zeros: ``color`` 0 grey, 2 RGB, 6 RGBA; ``text_bomb`` adds a zTXt chunk inflating to that many
    bytes."""
    channels = {0: 1, 2: 3, 6: 4}[color] * depth // 8
    raw = height * (width * channels + 1)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    text = _chunk(b"zTXt", b"comment\0\0" + zlib_zeros(text_bomb)) if text_bomb else b""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + text + _chunk(b"IDAT", zlib_zeros(raw)) + _chunk(b"IEND", b"")


def bmp_header(width: int, height: int) -> bytes:
    """A BMP that declares ``width`` x ``height`` 24-bit pixels and holds none of them."""
    return (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0))  # fmt: skip


def gif_screen(width: int, height: int) -> bytes:
    """A 1x1 GIF whose logical screen says ``width`` x ``height``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def small_png(value: int = 0, side: int = 12) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (value, 255 - value, 40)).save(buf, "PNG")
    return buf.getvalue()


# -- checkpoints -----------------------------------------------------------------------------------------

class Evil:
    """Unpickling this runs exec(), which writes ``target``: what a malicious checkpoint does."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return exec, (f"open({self.target!r}, 'w').write('pwned')",)


def torch_bytes(obj, legacy: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _torch_records(obj) -> list[tuple[str, bytes]]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(torch_bytes(obj))) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def torch_bomb(inflated: int = 2**30) -> bytes:
    """``{"w": float32 tensor of inflated/4 zeros}`` as torch.save would write it, except that the tensor's
    record is stored deflated: about inflated / 1030 bytes on disk."""
    n = inflated // 4
    out = []
    for name, data in _torch_records({"w": __import__("torch").zeros(12345)}):
        if name.endswith("data.pkl"):
            assert data.count(b"M90") == 2  # the size tuple and the storage's element count, as BININT2
            data = data.replace(b"M90", b"J" + struct.pack("<i", n))
            out.append(Entry(name, data))
        elif name.endswith("/data/0"):
            out.append(Entry(name, deflate_zeros(inflated), 8, crc_zeros(inflated), inflated))
        else:
            out.append(Entry(name, data))
    return zip_bytes(out)


def torch_lying_sizes(declared: int = 2**30) -> bytes:
    """A torch checkpoint whose stored tensor record declares ``declared`` bytes it does not hold."""
    out = []
    for name, data in _torch_records({"w": __import__("torch").zeros(4)}):
        out.append(Entry(name, data, size=declared) if name.endswith("/data/0") else Entry(name, data))
    return zip_bytes(out)
