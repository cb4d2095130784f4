"""Zip archives from strangers: believe nothing an archive says about itself until it is checked.

Three gates, each before the work it protects:

1. **The end-of-central-directory record** (22 bytes at the end, or its zip64 form): the entry count
   and the directory's size, read from the last 64 KiB of the file *before* :mod:`zipfile` parses the
   directory. A 219 MB zip listing 4 million entries is refused here in milliseconds; zipfile alone
   would first build 4 million ``ZipInfo`` objects (74 s and 2 GB in the report that found it).
   A directory cannot hold more entries than its size allows (each record is at least 46 bytes).
2. **The directory's entries** (:func:`plan`): names are normalised (``\\`` to ``/``, ``.`` and empty
   parts dropped) and refused when absolute, with ``..``, too long, with control characters, empty
   after normalising, duplicated, or a file where another entry needs a folder (``cats/x`` and
   ``cats/x/1.png``); links, encrypted entries and unknown compression methods are refused; the
   declared sizes must stay within the total, and the compression ratio within :attr:`ZipLimits.max_ratio`
   (images barely compress: 1 MB of deflated zeros inflating to 1 GB is a ratio of about 1000).
3. **Inflating** (:func:`extract`): the bytes actually produced are counted, so an entry that lies
   about its size is stopped at the total limit (and zipfile's CRC check fails it at its declared size).

Every refusal is a :class:`ZipRefused` naming the entry and the rule.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["ZipRefused", "ZipLimits", "Directory", "METHODS", "SKIPPED_PREFIXES", "read_directory", "check_directory",
           "open_checked", "plan", "extract"]

EOCD = b"PK\x05\x06"
EOCD64 = b"PK\x06\x06"
EOCD64_LOCATOR = b"PK\x06\x07"
CENTRAL_RECORD_MIN = 46  # bytes of a central-directory record with an empty name
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
           zipfile.ZIP_LZMA: "lzma"}  # fmt: skip
SKIPPED_PREFIXES = ("__MACOSX",)  # macOS's resource forks: never class folders


class ZipRefused(ValueError):
    """An archive (or one of its entries) that is refused; the message names it and the rule."""


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may claim. Defaults fit an upload of class folders of images."""

    max_entries: int = 150_000  # directory records (files and folders)
    max_files: int = 100_000
    max_directory_bytes: int = 32 * 2**20
    max_total_bytes: int = 2_000_000_000  # inflated, all entries
    max_ratio: float = 100.0  # inflated / compressed, per entry and for the archive
    ratio_floor_bytes: int = 2**20  # entries (and archives) smaller than this inflated are not ratio-checked
    max_name_chars: int = 1024
    max_part_bytes: int = 255  # one path component, as Linux allows (NAME_MAX)
    max_depth: int = 32


@dataclass(frozen=True)
class Directory:
    """What the end-of-central-directory record says (``start``: where the directory must begin, just
    before the end record, whatever ``offset`` claims: archives with data prepended shift both)."""

    entries: int
    size: int
    offset: int
    archive_bytes: int
    zip64: bool
    start: int


def _size(fh: BinaryIO) -> int:
    fh.seek(0, os.SEEK_END)
    return fh.tell()


def read_directory(fh: BinaryIO, what: str = "the zip archive") -> Directory:
    """Entry count, size and offset of the central directory, from the (zip64) end record only."""
    total = _size(fh)
    tail_len = min(total, 22 + 65535 + 20 + 56)
    fh.seek(total - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(EOCD)
    while pos >= 0 and pos + 22 > len(tail):
        pos = tail.rfind(EOCD, 0, pos)
    if pos < 0:
        raise ZipRefused(f"{what} has no end-of-directory record: it is cut short, or not a zip archive")
    disk, cd_disk, _, entries, cd_size, cd_offset, _ = struct.unpack("<HHHHIIH", tail[pos + 4 : pos + 22])
    zip64, end_at = False, total - tail_len + pos
    loc = pos - 20
    has_locator = loc >= 0 and tail[loc : loc + 4] == EOCD64_LOCATOR  # torch.save writes one always
    if (entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF) and not has_locator:
        raise ZipRefused(f"{what} is damaged: its end record asks for a zip64 record that is not there")
    if has_locator:  # the zip64 record just before its locator, where zipfile reads it (not where it points)
        eocd64_at = total - tail_len + loc - 56
        if eocd64_at < 0:
            raise ZipRefused(f"{what} is damaged: its zip64 end record would begin before the file does")
        fh.seek(eocd64_at)
        rec = fh.read(56)
        if rec[:4] != EOCD64:
            raise ZipRefused(f"{what} is damaged: no zip64 end record before its locator")
        disk, cd_disk, _, entries, cd_size, cd_offset = struct.unpack("<IIQQQQ", rec[16:56])
        zip64, end_at = True, eocd64_at
    if disk or cd_disk:
        raise ZipRefused(f"{what} is one part of a multi-part (split) archive; upload a single-file zip")
    return Directory(entries, cd_size, cd_offset, total, zip64, end_at - cd_size)


def check_directory(fh: BinaryIO, limits: ZipLimits, what: str = "the zip archive") -> Directory:
    """Refuse an archive whose end record claims too many entries or too large a directory, before parsing."""
    d = read_directory(fh, what)
    if d.entries > limits.max_entries:
        raise ZipRefused(f"{what} lists {d.entries:,} entries; at most {limits.max_entries:,} are allowed")
    if d.size > limits.max_directory_bytes:
        raise ZipRefused(f"{what} has a directory of {d.size:,} bytes; at most {limits.max_directory_bytes:,} "
                         "are allowed")
    if d.size > d.archive_bytes:
        raise ZipRefused(f"{what} is damaged: its directory ({d.size:,} bytes) is larger than the file "
                         f"({d.archive_bytes:,} bytes)")
    if d.size < d.entries * CENTRAL_RECORD_MIN:
        raise ZipRefused(f"{what} is damaged: a directory of {d.size:,} bytes cannot hold the {d.entries:,} "
                         f"entries its end record claims (each takes at least {CENTRAL_RECORD_MIN} bytes)")
    if d.start < 0:
        raise ZipRefused(f"{what} is damaged: its directory would begin before the file does")
    _count_records(fh, d, limits, what)
    return d


def _count_records(fh: BinaryIO, d: Directory, limits: ZipLimits, what: str) -> None:
    """Walk the directory's records by their lengths only (no objects made): the end record's count is
    16 bits in a classic archive, and zipfile parses every record the directory holds, whatever it says."""
    fh.seek(d.start)
    buf = fh.read(d.size)
    n = pos = 0
    while pos < len(buf):
        if buf[pos : pos + 4] != b"PK\x01\x02" or pos + CENTRAL_RECORD_MIN > len(buf):
            raise ZipRefused(f"{what} is damaged: its directory has no record where record {n + 1:,} should be")
        name, extra, comment = struct.unpack_from("<HHH", buf, pos + 28)
        pos += CENTRAL_RECORD_MIN + name + extra + comment
        n += 1
        if n > limits.max_entries:
            raise ZipRefused(f"{what} lists more than {limits.max_entries:,} entries in its directory (its end "
                             f"record says {d.entries:,}); at most {limits.max_entries:,} are allowed")


def open_checked(fh: BinaryIO, limits: ZipLimits, what: str = "the zip archive") -> tuple[zipfile.ZipFile, Directory]:
    """:func:`check_directory`, then zipfile on the same handle (zipfile's own errors become ZipRefused)."""
    d = check_directory(fh, limits, what)
    fh.seek(0)
    try:
        return zipfile.ZipFile(fh), d
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as exc:
        raise ZipRefused(f"{what} is a damaged zip archive: {exc}") from exc


def _parts(info: zipfile.ZipInfo, limits: ZipLimits) -> tuple[str, ...]:
    """The entry's path as folder names, or ZipRefused naming why it cannot be written safely."""
    raw = info.filename
    shown = repr(raw if len(raw) <= 80 else raw[:60] + "..." + raw[-12:])
    name = raw.replace("\\", "/")
    if len(name) > limits.max_name_chars:
        raise ZipRefused(f"zip entry {shown} is refused: its name has {len(name):,} characters; at most "
                         f"{limits.max_name_chars} are allowed")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ZipRefused(f"zip entry {shown} is refused: it has an absolute path; only relative paths "
                         "inside the archive are allowed")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise ZipRefused(f"zip entry {shown} is refused: its name holds control characters")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ZipRefused(f"zip entry {shown} is refused: it has a '..' component; only relative paths inside "
                         "the archive are allowed")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise ZipRefused(f"zip entry {shown} is refused: it is a symbolic link; only files and folders are "
                         "allowed")
    long = next((p for p in parts if len(p.encode("utf-8", "surrogatepass")) > limits.max_part_bytes), None)
    if long is not None:
        raise ZipRefused(f"zip entry {shown} is refused: a part of its name is {len(long.encode('utf-8', 'replace'))} "
                         f"bytes long; at most {limits.max_part_bytes} are allowed (a file name's limit)")
    if len(parts) > limits.max_depth:
        raise ZipRefused(f"zip entry {shown} is refused: it is {len(parts)} folders deep; at most "
                         f"{limits.max_depth} are allowed")
    if not parts and not info.is_dir():
        raise ZipRefused(f"zip entry {shown} is refused: its name is empty once '.' and '/' are removed")
    return tuple(parts)


def plan(zf: zipfile.ZipFile, d: Directory, limits: ZipLimits,
         what: str = "the zip archive") -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The files to extract, each with its normalised path; every rule of gate 2 checked first."""
    files: dict[tuple[str, ...], zipfile.ZipInfo] = {}
    folders: dict[tuple[str, ...], str] = {}
    for info in zf.infolist():
        parts = _parts(info, limits)
        if parts and parts[0] in SKIPPED_PREFIXES:
            continue
        for i in range(1, len(parts) if not info.is_dir() else len(parts) + 1):
            folders.setdefault(parts[:i], info.filename)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise ZipRefused(f"zip entry {info.filename!r} is encrypted; upload an archive without a password")
        if info.compress_type not in METHODS:
            raise ZipRefused(f"zip entry {info.filename!r} uses compression method {info.compress_type}, which "
                             f"is not supported; allowed: {', '.join(METHODS.values())}")
        if parts in files:
            raise ZipRefused(f"zip entry {info.filename!r} appears twice in the archive (as "
                             f"{files[parts].filename!r} too); each file may appear once")
        if info.compress_size > d.archive_bytes:
            raise ZipRefused(f"zip entry {info.filename!r} is damaged: it claims {info.compress_size:,} compressed "
                             f"bytes in an archive of {d.archive_bytes:,}")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise ZipRefused(f"zip entry {info.filename!r} inflates {ratio:,.0f} times ({info.compress_size:,} to "
                             f"{info.file_size:,} bytes); at most {limits.max_ratio:g} times is allowed (a "
                             "compression bomb, or not images)")
        files[parts] = info
    for parts, info in files.items():
        if parts in folders:
            raise ZipRefused(f"zip entry {info.filename!r} is a file, but {folders[parts]!r} needs a folder of "
                             "that name; rename one of them")
    if len(files) > limits.max_files:
        raise ZipRefused(f"{what} holds {len(files):,} files; at most {limits.max_files:,} are allowed")
    declared = sum(i.file_size for i in files.values())
    if declared > limits.max_total_bytes:
        raise ZipRefused(f"{what} would unpack to {declared:,} bytes; at most {limits.max_total_bytes:,} are "
                         "allowed")
    if declared > limits.ratio_floor_bytes and declared > limits.max_ratio * d.archive_bytes:
        raise ZipRefused(f"{what} would inflate {declared / d.archive_bytes:,.0f} times ({d.archive_bytes:,} to "
                         f"{declared:,} bytes); at most {limits.max_ratio:g} times is allowed")
    return [(info, parts) for parts, info in files.items()]


def extract(zf: zipfile.ZipFile, entries: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], dest: Path,
            limits: ZipLimits, what: str = "the zip archive") -> int:
    """Write ``entries`` under ``dest`` (which must exist), counting the bytes actually inflated;
    return how many were written. The caller removes ``dest`` when this raises."""
    written, root = 0, Path(dest).resolve()
    for info, parts in entries:
        target = root.joinpath(*parts)
        if root not in target.parents:  # a second check after normalising: never write outside
            raise ZipRefused(f"zip entry {info.filename!r} points outside the destination; refused")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "xb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > limits.max_total_bytes:
                        raise ZipRefused(f"{what} inflates past {limits.max_total_bytes:,} bytes (more than its "
                                         "directory declares); refused")
                    out.write(chunk)
        except ZipRefused:
            raise
        except OSError as exc:  # its message would name a server path: say what happened, not where
            raise ZipRefused(f"zip entry {info.filename!r} cannot be written: {exc.strerror or type(exc).__name__}"
                             ) from exc
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, ValueError, struct.error,
                zipfile.LargeZipFile, MemoryError) as exc:  # fmt: skip
            raise ZipRefused(f"zip entry {info.filename!r} cannot be extracted: {type(exc).__name__}: "
                             f"{str(exc)[:200]}") from exc
    return written
