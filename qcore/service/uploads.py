"""Uploaded checkpoints and zipped image folders: checked by content, kept under a content-hash name.

Nothing trusts a file name. A checkpoint's format is read from its bytes (:mod:`qcore.guards.safe_checkpoint`),
then it is read by :func:`qcore.nets.weights.read_state_dict` (``weights_only=True``: pickles that need code
are refused; zip records bounded before ``torch.load``; string keys; finite values). A dataset must be a
zip archive; :func:`unpack_zip` checks its directory before parsing it (:mod:`qcore.guards.safe_zip`: names,
links, clashes, compression ratio, inflated bytes), leaves nothing behind when it refuses, and
:func:`qcore.guards.dataset_summary.summarize` says what it holds: an upload that cannot work (one class, no
images, a class with one image) is refused at once. Every failure, whatever raised it, becomes an
:class:`UploadError` naming the user's file and the problem, never a server path, and removes what was
stored. Each upload keeps a record (its file name, what it holds) and the folder has a quota, oldest first
out (:mod:`qcore.guards.upload_quota`); an upload that a queued or running job reads is never removed.

Files live in ``<data home>/uploads`` so that a URL can name them (``?ckpt=<hash>.pt``) without naming
any other file of the server. The app's upload widgets call this module; nothing here knows about
Streamlit.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

from qcore.data.base import DatasetError
from qcore.data.registry import dataset_label as registry_label
from qcore.data.registry import folder_name, folder_path
from qcore.env.paths import atomic_write_bytes, data_home, subdir
from qcore.guards import safe_zip, upload_quota
from qcore.guards.safe_zip import ZipLimits
from qcore.guards.upload_quota import Upload

__all__ = ["CHECKPOINT_NAME", "DATASET_NAME", "MAX_DATASET_BYTES", "MAX_DATASET_FILES", "UploadError",
           "checkpoint_kind", "checkpoint_dir", "save_checkpoint", "checkpoint_path", "checkpoint_upload",
           "datasets_dir", "unpack_zip", "save_dataset", "uploaded_datasets", "dataset_folder", "dataset_upload",
           "dataset_summary", "dataset_label", "all_uploads", "delete", "no_paths"]

CHECKPOINT_NAME = re.compile(r"^[0-9a-f]{16}\.(pt|safetensors)$")
DATASET_NAME = re.compile(r"^[0-9a-f]{16}$")
MAX_DATASET_BYTES = 2_000_000_000  # uncompressed
MAX_DATASET_FILES = 100_000


class UploadError(ValueError):
    """An upload that is refused; the message says why, in the user's terms."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _scrub(text: str, name: str, *paths: Path) -> str:
    """``text`` with the server's paths replaced by the upload's name (longest first)."""
    for p in sorted({str(p) for p in paths if p}, key=len, reverse=True):
        text = text.replace(p, name)
    return text.replace(str(data_home()), "<qcore data>")


def no_paths(text: str) -> str:
    """A message (a job's error, say) with every upload's server path replaced by the user's file name and
    the data folder (uploads, baselines) by ``<qcore data>``: the app never shows where the server keeps
    things."""
    for up in all_uploads():
        text = _scrub(text, up.name, up.path)
    return _scrub(text, "")


def _fail(exc: BaseException, name: str, *paths: Path) -> UploadError:
    text = str(exc) if isinstance(exc, ValueError) else f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
    text = _scrub(text, name, *paths)
    return UploadError(text if text.startswith(name) else f"{name}: {text}")


def checkpoint_kind(data: bytes, name: str = "this file") -> str:
    """``".safetensors"`` or ``".pt"`` from the content; raise :class:`UploadError` otherwise."""
    from qcore.guards.safe_checkpoint import CheckpointRefused, sniff

    try:
        kind = sniff(bytes(data[:16]), len(data), name)
    except CheckpointRefused as exc:
        raise UploadError(str(exc)) from exc
    return ".safetensors" if kind == "safetensors" else ".pt"


def checkpoint_dir() -> Path:
    """Where uploaded checkpoints are kept."""
    return subdir("uploads")


def save_checkpoint(data: bytes, filename: str = "the uploaded file") -> tuple[Path, int, int]:
    """Check ``data`` by content, store it as ``uploads/<sha256[:16]>.<kind>``, read it once; return
    ``(path, tensors, values)``. Raises :class:`UploadError` naming ``filename``; nothing is kept then."""
    kind = checkpoint_kind(data, filename)
    path = checkpoint_dir() / f"{_digest(data)}{kind}"
    existed = path.exists()
    try:
        if not existed:
            atomic_write_bytes(path, data)
        from qcore.nets import weights  # reads with weights_only=True: a pickle that needs code is refused

        state = weights.read_state_dict(path, name=filename)
        shapes = {k: list(v.shape) for k, v in state.items()}
        values = sum(int(t.numel()) for t in state.values())
        upload_quota.write_record(path, "checkpoint", filename, len(data), tensors=len(state), values=values,
                                  shapes=shapes)
        del state
        _make_room(path)
    except BaseException as exc:
        if not existed:
            path.unlink(missing_ok=True)
            upload_quota.record_path(path).unlink(missing_ok=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _fail(exc, filename, path) from exc
    return path, len(shapes), values


def checkpoint_path(name: str | None) -> Path | None:
    """The stored checkpoint a URL names (only bare hash names inside the uploads folder)."""
    if not name or not CHECKPOINT_NAME.match(name):
        return None
    path = checkpoint_dir() / name
    return path if path.is_file() else None


def checkpoint_upload(path: Path) -> Upload:
    """The stored checkpoint ``path`` with its record (the user's file name, tensors, values, shapes)."""
    return upload_quota.read(path, "checkpoint")


def datasets_dir() -> Path:
    """Where uploaded zips are unpacked, one folder per content hash."""
    return subdir("uploads") / "datasets"


def _is_zip(head: bytes) -> bool:
    """Whether content starting with ``head`` (4 bytes are enough) is a zip archive (or an empty one)."""
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _class_root(folder: Path) -> Path:
    """The folder whose subfolders are the classes: ``folder``, or its only subfolder (``pets/cats/1.png``)."""
    inner = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return inner[0] if len(inner) == 1 and inner[0].is_dir() else folder


def unpack_zip(src: Path | bytes, dest: Path, *, max_bytes: int = 500_000_000, max_files: int = 50_000,
               limits: ZipLimits | None = None) -> Path:
    """Unpack a zip of class folders into ``dest``; return the folder whose subfolders are the classes.

    Every rule of :mod:`qcore.guards.safe_zip` applies (the directory's size and entry count read before it is
    parsed; names, links, clashes, compression ratio, inflated bytes); ``max_bytes`` and ``max_files``
    (or ``limits``) set the totals. Refusals are :class:`DatasetError`, and leave nothing behind:
    everything is extracted into a temporary folder that is renamed to ``dest`` only when complete.
    """
    limits = limits or ZipLimits(max_total_bytes=max_bytes, max_files=max_files)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DatasetError(f"{dest.name} already exists and is not an empty folder; choose a new destination")
    fh = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
    try:
        with fh:
            if not _is_zip(fh.read(4)):
                raise DatasetError("the upload is not a zip archive (its content does not start with 'PK'); "
                                   "upload a .zip holding one folder per class")
            zf, directory = safe_zip.open_checked(fh, limits)
            with zf:
                entries = safe_zip.plan(zf, directory, limits)
                if not entries:
                    raise DatasetError("the zip archive holds no files; expected <class>/<image> entries")
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
                try:
                    safe_zip.extract(zf, entries, tmp, limits)
                    if dest.exists():
                        dest.rmdir()
                    os.replace(tmp, dest)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
    except safe_zip.ZipRefused as exc:
        raise DatasetError(str(exc)) from exc
    return _class_root(dest)


def save_dataset(data: bytes, filename: str = "the uploaded zip") -> str:
    """Unpack a zip of class folders into ``uploads/datasets/<hash>``, check what it holds; return its
    ``imagefolder:<root>`` name. Raises :class:`UploadError` naming ``filename`` (see :func:`unpack_zip` and
    :func:`qcore.guards.dataset_summary.problems`); nothing is kept then."""
    from qcore.guards import dataset_summary as ds

    dest = datasets_dir() / _digest(data)
    existed = dest.is_dir() and any(dest.iterdir())
    try:
        limits = ZipLimits(max_total_bytes=MAX_DATASET_BYTES, max_files=MAX_DATASET_FILES)
        root = _class_root(dest) if existed else unpack_zip(data, dest, limits=limits)
        summary = ds.summarize(root)
        if summary.problems:
            raise UploadError(f"{filename} cannot be a classifier's dataset: {'; '.join(summary.problems)}")
        upload_quota.write_record(dest, "dataset", filename, upload_quota.disk_bytes(dest), root=root.name,
                                  summary=summary.to_dict())
        _make_room(dest)
    except BaseException as exc:
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
            upload_quota.record_path(dest).unlink(missing_ok=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _fail(exc, filename, dest) from exc
    return folder_name(root)


def uploaded_datasets() -> list[str]:
    """``imagefolder:<root>`` names of the zips unpacked so far (newest first)."""
    folder = datasets_dir()
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and DATASET_NAME.match(p.name) and any(p.iterdir())]
    found.sort(key=lambda p: upload_quota.read(p, "dataset").uploaded, reverse=True)
    return [folder_name(_class_root(p)) for p in found]


def _folder_of(name: str) -> Path | None:
    """The folder an ``imagefolder:`` name points at; None for a built-in dataset or a name that is neither."""
    try:
        return folder_path(name)
    except DatasetError:
        return None


def dataset_folder(name: str) -> Path | None:
    """The upload folder (``uploads/datasets/<hash>``) behind an ``imagefolder:`` name, or None."""
    folder = _folder_of(name)
    if folder is None:
        return None
    path, base = folder.resolve(), datasets_dir().resolve()
    for p in (path, *path.parents):
        if p.parent == base and DATASET_NAME.match(p.name):
            return p
    return None


def dataset_upload(name: str) -> Upload | None:
    """The upload behind dataset ``name`` with its record; None when ``name`` is not (or no longer) an upload."""
    folder = dataset_folder(name)
    return upload_quota.read(folder, "dataset") if folder is not None and folder.is_dir() else None


def dataset_summary(name: str):
    """What an uploaded dataset holds (:class:`qcore.guards.dataset_summary.Summary`): from its record, or read now
    for uploads made before records were kept. None when ``name`` is not an upload."""
    from qcore.guards import dataset_summary as ds
    from qcore.guards.folder_scan import ScanError

    up = dataset_upload(name)
    if up is None:
        return None
    if "summary" in up.info:
        return ds.Summary.from_dict(up.info["summary"])
    try:
        summary = ds.summarize(_folder_of(name))
    except (ScanError, OSError) as exc:
        return ds.Summary(problems=[_scrub(str(exc), up.name, up.path)])
    try:  # read once, kept in the upload's record
        upload_quota.write_record(up.path, "dataset", up.name if up.info else "", up.bytes, uploaded=up.uploaded,
                                  summary=summary.to_dict())
    except OSError:
        pass
    return summary


def dataset_label(name: str) -> str:
    """How a dataset is named to a user: an upload by the user's file name and what it holds
    (``pets.zip · 2 classes, 118 images``, never a server path; ``deleted upload`` once deleted), any
    other dataset as :func:`qcore.data.registry.dataset_label` names it (``Fashion-MNIST``)."""
    if dataset_folder(name) is None:
        return registry_label(name)
    up = dataset_upload(name)
    if up is None:
        return "deleted upload"
    classes = (up.info.get("summary") or {}).get("classes") or {}
    return f"{up.name} · {len(classes)} classes, {sum(classes.values())} images" if classes else up.name


def all_uploads() -> list[Upload]:
    """Every stored upload, newest first."""
    out = [upload_quota.read(p, "checkpoint") for p in checkpoint_dir().iterdir()
           if p.is_file() and CHECKPOINT_NAME.match(p.name)]  # fmt: skip
    if datasets_dir().is_dir():
        out += [upload_quota.read(p, "dataset") for p in datasets_dir().iterdir()
                if p.is_dir() and DATASET_NAME.match(p.name)]  # fmt: skip
    return sorted(out, key=lambda u: u.uploaded, reverse=True)


def _in_use() -> set[Path]:
    """Uploads that a queued or running job reads (the quota and Delete leave them alone)."""
    from qcore.runs.store import Store

    used: set[Path] = set()
    for job in Store().jobs(limit=500):
        if not job.active:
            continue
        weights, dataset = str(job.config.get("weights", "")), str(job.config.get("dataset", ""))
        if weights and checkpoint_path(Path(weights).name) == Path(weights):
            used.add(Path(weights))
        if (folder := dataset_folder(dataset)) is not None:
            used.add(folder)
    return used


def _make_room(keep: Path) -> None:
    try:
        upload_quota.enforce(all_uploads(), keep, _in_use())
    except ValueError as exc:
        raise UploadError(str(exc)) from exc


def delete(path: Path) -> None:
    """Delete an upload (a checkpoint file or a dataset folder); refused while a job uses it."""
    path = Path(path)
    up = next((u for u in all_uploads() if u.path == path), None)
    if up is None:
        return
    if path in _in_use():
        raise UploadError(f"{up.name} is used by a queued or running job; cancel the job first")
    upload_quota.remove(up)
