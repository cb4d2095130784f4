"""Uploaded checkpoints and zipped image folders: checked by content, kept under a content-hash name.

Nothing trusts a file name. A checkpoint must look like safetensors (an 8-byte little-endian
header length, then a JSON object) or like a PyTorch file (a zip archive or a pickle), and is
then read by :func:`qcore.weights.read_state_dict`, which loads with ``weights_only=True`` and
refuses pickles that need code. A dataset must be a zip archive; :func:`unpack_zip` refuses entries
that leave its folder, links, and archives that inflate past the limit, and leaves nothing behind
when it refuses. Files live in ``<data home>/uploads`` so that a URL can name them
(``?ckpt=<hash>.pt``) without naming any other file of the server. The app's upload widgets call
this module; nothing here knows about Streamlit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

from qcore.data.base import DatasetError
from qcore.data.registry import folder_name
from qcore.paths import atomic_write_bytes, subdir

__all__ = ["CHECKPOINT_NAME", "MAX_DATASET_BYTES", "MAX_DATASET_FILES", "UploadError",
           "checkpoint_kind", "checkpoint_dir", "save_checkpoint", "checkpoint_path",
           "unpack_zip", "save_dataset", "uploaded_datasets"]

CHECKPOINT_NAME = re.compile(r"^[0-9a-f]{16}\.(pt|safetensors)$")
_DATASET_NAME = re.compile(r"^[0-9a-f]{16}$")
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
    """Where uploaded checkpoints are kept."""
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
    from qcore import weights  # reads with weights_only=True: a pickle that needs code is refused

    try:
        state = weights.read_state_dict(path)
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


def _datasets_dir() -> Path:
    """Where uploaded zips are unpacked, one folder per content hash."""
    return subdir("uploads") / "datasets"


def _is_zip(head: bytes) -> bool:
    """Whether content starting with ``head`` (4 bytes are enough) is a zip archive (or an empty one)."""
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _class_root(folder: Path) -> Path:
    """The folder whose subfolders are the classes: ``folder``, or its only subfolder (``pets/cats/1.png``)."""
    inner = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return inner[0] if len(inner) == 1 and inner[0].is_dir() else folder


def _bad_member(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' component"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "a symbolic link"
    return None


def unpack_zip(src: Path | bytes, dest: Path, *, max_bytes: int = 500_000_000,
               max_files: int = 50_000) -> Path:
    """Unpack a zip of class folders into ``dest``; return the folder whose subfolders are the classes.

    Refuses (with :class:`DatasetError`, leaving nothing behind) content that is not a zip, entries with
    absolute paths, ``..`` or symbolic links, more than ``max_files`` files, and more than ``max_bytes``
    uncompressed bytes, whether declared in the directory or found while inflating. Everything is
    extracted into a temporary folder that is renamed to ``dest`` only when complete.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DatasetError(f"{dest} already exists and is not an empty folder; choose a new destination")
    fh = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
    with fh:
        if not _is_zip(fh.read(4)):
            raise DatasetError("the upload is not a zip archive (its content does not start with 'PK'); "
                               "upload a .zip holding one folder per class")
        fh.seek(0)
        try:
            zf = zipfile.ZipFile(fh)
        except zipfile.BadZipFile as exc:
            raise DatasetError(f"the upload is a damaged zip archive: {exc}") from exc
        with zf:
            infos = zf.infolist()
            for info in infos:
                if (why := _bad_member(info)) is not None:
                    raise DatasetError(f"zip entry {info.filename!r} is refused: it has {why}; "
                                       "only relative paths inside the archive are allowed")
            files = [i for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
            if not files:
                raise DatasetError("the zip archive holds no files; expected <class>/<image> entries")
            if len(files) > max_files:
                raise DatasetError(f"the zip archive holds {len(files)} files; "
                                   f"at most {max_files} are allowed")
            if (declared := sum(i.file_size for i in files)) > max_bytes:
                raise DatasetError(f"the zip archive would unpack to {declared:,} bytes; "
                                   f"at most {max_bytes:,} are allowed")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
            try:
                _extract(zf, files, tmp, max_bytes)
                if dest.exists():
                    dest.rmdir()
                os.replace(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return _class_root(dest)


def _extract(zf: zipfile.ZipFile, files: list[zipfile.ZipInfo], tmp: Path, max_bytes: int) -> None:
    written, root = 0, tmp.resolve()
    for info in files:
        target = tmp.joinpath(*[p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")])
        if root not in target.resolve().parents:
            raise DatasetError(f"zip entry {info.filename!r} points outside the destination; refused")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise DatasetError(f"the zip archive inflates past {max_bytes:,} bytes "
                                           "(more than its directory declares); refused")
                    out.write(chunk)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError) as exc:
            raise DatasetError(f"zip entry {info.filename!r} cannot be extracted: {exc}") from exc


def save_dataset(data: bytes) -> str:
    """Unpack a zip of class folders into ``uploads/datasets/<hash>``; return its ``imagefolder:<root>`` name.

    Raises :class:`qcore.data.DatasetError` with the reason (see :func:`unpack_zip`); nothing is kept then.
    """
    dest = _datasets_dir() / _digest(data)
    if dest.is_dir() and any(dest.iterdir()):
        root = _class_root(dest)
    else:
        root = unpack_zip(data, dest, max_bytes=MAX_DATASET_BYTES, max_files=MAX_DATASET_FILES)
    classes = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(classes) < 2:
        shutil.rmtree(dest, ignore_errors=True)
        raise DatasetError(
            f"the archive holds {len(classes)} class folder(s); a classifier needs at least two "
            "(<class>/<image> entries, e.g. cats/1.jpg and dogs/2.jpg)"
        )
    return folder_name(root)


def uploaded_datasets() -> list[str]:
    """``imagefolder:<root>`` names of the zips unpacked so far (newest first)."""
    folder = _datasets_dir()
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _DATASET_NAME.match(p.name) and any(p.iterdir())]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [folder_name(_class_root(p)) for p in found]
