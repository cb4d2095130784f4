"""Uploaded checkpoints and zipped image folders: checked by content, kept under a content-hash name.

Nothing trusts a file name. A checkpoint must look like safetensors (an 8-byte little-endian
header length, then a JSON object) or like a PyTorch file (a zip archive or a pickle), and is
then read by :func:`qcore.models.read_state_dict`, which loads with ``weights_only=True`` and
refuses pickles that need code. A dataset must be a zip archive; :func:`qcore.imagefolder.unpack_zip`
refuses entries that leave its folder, links, and archives that inflate past the limit.
Files live in ``<data home>/uploads`` so that a URL can name them (``?ckpt=<hash>.pt``) without
naming any other file of the server.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

from qcore.paths import atomic_write_bytes, subdir

CHECKPOINT_NAME = re.compile(r"^[0-9a-f]{16}\.(pt|safetensors)$")
DATASET_NAME = re.compile(r"^[0-9a-f]{16}$")
MAX_DATASET_BYTES = 2_000_000_000  # uncompressed
MAX_DATASET_FILES = 200_000


class UploadError(ValueError):
    """An upload that is refused; the message says why, in the user's terms."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def checkpoint_kind(data: bytes) -> str:
    """``".safetensors"`` or ``".pt"`` from the first bytes; raise :class:`UploadError` otherwise."""
    if len(data) >= 10:
        (n,) = struct.unpack("<Q", data[:8])
        if 2 <= n <= len(data) - 8 and data[8:9] == b"{":
            try:
                header = json.loads(data[8 : 8 + n])
            except (UnicodeDecodeError, ValueError):
                header = None
            if isinstance(header, dict):
                return ".safetensors"
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":  # torch.save's zip format, or a legacy pickle
        return ".pt"
    raise UploadError(
        "this file is not a checkpoint: its content is neither safetensors (a length and a "
        "JSON header) nor a PyTorch file (a zip archive or a pickle)"
    )


def checkpoint_dir() -> Path:
    return subdir("uploads")


def save_checkpoint(data: bytes) -> tuple[Path, int, int]:
    """Check ``data`` by content, store it as ``uploads/<sha256[:16]>.<kind>``, read it once; return
    ``(path, tensors, values)``.

    Raises :class:`UploadError` (or qcore's ``WeightsError``) with the reason; nothing is kept then.
    """
    if not data:
        raise UploadError("the uploaded file is empty")
    path = checkpoint_dir() / f"{_digest(data)}{checkpoint_kind(data)}"
    if not path.exists():
        atomic_write_bytes(path, data)
    from qcore import models  # reads with weights_only=True: a pickle that needs code is refused

    try:
        state = models.read_state_dict(path)
    except ValueError:
        path.unlink(missing_ok=True)
        raise
    return path, len(state), sum(int(t.numel()) for t in state.values())


def checkpoint_path(name: str | None) -> Path | None:
    """The stored checkpoint a URL names (only bare hash names inside the uploads folder)."""
    if not name or not CHECKPOINT_NAME.match(name):
        return None
    path = checkpoint_dir() / name
    return path if path.is_file() else None


def datasets_dir() -> Path:
    return subdir("uploads") / "datasets"


def _class_root(folder: Path) -> Path:
    inner = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return inner[0] if len(inner) == 1 and inner[0].is_dir() else folder


def save_dataset(data: bytes) -> str:
    """Unpack a zip of class folders into ``uploads/datasets/<hash>``; return ``imagefolder:<root>``."""
    from qcore.imagefolder import unpack_zip

    if data[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise UploadError(
            "this file is not a zip archive (its content does not start with 'PK'); "
            "upload a .zip holding one folder per class"
        )
    dest = datasets_dir() / _digest(data)
    if dest.is_dir() and any(dest.iterdir()):
        root = _class_root(dest)
    else:
        root = unpack_zip(data, dest, max_bytes=MAX_DATASET_BYTES, max_files=MAX_DATASET_FILES)
    classes = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(classes) < 2:
        shutil.rmtree(dest, ignore_errors=True)
        raise UploadError(
            f"the archive holds {len(classes)} class folder(s); a classifier needs at least two "
            "(<class>/<image> entries, e.g. cats/1.jpg and dogs/2.jpg)"
        )
    return f"imagefolder:{root}"


def uploaded_datasets() -> list[str]:
    """``imagefolder:<root>`` names of the zips unpacked so far (newest first)."""
    folder = datasets_dir()
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and DATASET_NAME.match(p.name) and any(p.iterdir())]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [f"imagefolder:{_class_root(p)}" for p in found]
