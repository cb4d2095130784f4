"""Uploaded checkpoints and zipped image folders: checked by content, kept under a content-hash name.

Nothing trusts a file name. A checkpoint's format is read from its bytes (:mod:`qcore.safe_checkpoint`),
then it is read by :func:`qcore.models.read_state_dict` (``weights_only=True``; zip records bounded before
``torch.load``; string keys; finite values). A dataset must be a zip archive; :func:`qcore.imagefolder.unpack_zip`
checks its directory before parsing it (:mod:`qcore.safe_zip`), and :func:`qcore.dataset_summary.summarize`
says what it holds: an upload that cannot work (one class, no images, a class with one image) is refused
at once. Every failure, whatever raised it, becomes an :class:`UploadError` naming the user's file and the
problem, never a server path, and removes what was stored. Each upload keeps a record (its file name, what
it holds) and the folder has a quota, oldest first out (:mod:`qcore.upload_quota`).
Files live in ``<data home>/uploads`` so that a URL can name them (``?ckpt=<hash>.pt``) without
naming any other file of the server.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from qcore import upload_quota
from qcore.paths import atomic_write_bytes, data_home, subdir
from qcore.upload_quota import Upload

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


def _fail(exc: BaseException, name: str, *paths: Path) -> UploadError:
    text = str(exc) if isinstance(exc, ValueError) else f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
    text = _scrub(text, name, *paths)
    return UploadError(text if text.startswith(name) else f"{name}: {text}")


def checkpoint_kind(data: bytes, name: str = "this file") -> str:
    """``".safetensors"`` or ``".pt"`` from the content; raise :class:`UploadError` otherwise."""
    from qcore.safe_checkpoint import CheckpointRefused, sniff

    try:
        kind = sniff(bytes(data[:16]), len(data), name)
    except CheckpointRefused as exc:
        raise UploadError(str(exc)) from exc
    return ".safetensors" if kind == "safetensors" else ".pt"


def checkpoint_dir() -> Path:
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
        from qcore import models  # reads with weights_only=True: a pickle that needs code is refused

        state = models.read_state_dict(path, name=filename)
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
    return upload_quota.read(path, "checkpoint")


def datasets_dir() -> Path:
    return subdir("uploads") / "datasets"


def _class_root(folder: Path) -> Path:
    inner = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return inner[0] if len(inner) == 1 and inner[0].is_dir() else folder


def save_dataset(data: bytes, filename: str = "the uploaded zip") -> str:
    """Unpack a zip of class folders into ``uploads/datasets/<hash>``, check what it holds; return
    ``imagefolder:<root>``. Raises :class:`UploadError` naming ``filename``; nothing is kept then."""
    from qcore import dataset_summary
    from qcore.imagefolder import unpack_zip
    from qcore.safe_zip import ZipLimits

    if data[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise UploadError(f"{filename} is not a zip archive (its content does not start with 'PK'); "
                          "upload a .zip holding one folder per class")
    dest = datasets_dir() / _digest(data)
    existed = dest.is_dir() and any(dest.iterdir())
    try:
        limits = ZipLimits(max_total_bytes=MAX_DATASET_BYTES, max_files=MAX_DATASET_FILES)
        root = _class_root(dest) if existed else unpack_zip(data, dest, limits=limits)
        summary = dataset_summary.summarize(root)
        if summary.problems:
            raise UploadError(f"{filename} cannot be a classifier's dataset: {'; '.join(summary.problems)}")
        upload_quota.write_record(dest, "dataset", filename, upload_quota._du(dest), root=root.name,
                                  summary=summary.to_dict())
        _make_room(dest)
    except BaseException as exc:
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
            upload_quota.record_path(dest).unlink(missing_ok=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _fail(exc, filename, dest) from exc
    return f"imagefolder:{root}"


def uploaded_datasets() -> list[str]:
    """``imagefolder:<root>`` names of the zips unpacked so far (newest first)."""
    folder = datasets_dir()
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and DATASET_NAME.match(p.name) and any(p.iterdir())]
    found.sort(key=lambda p: upload_quota.read(p, "dataset").uploaded, reverse=True)
    return [f"imagefolder:{_class_root(p)}" for p in found]


def dataset_folder(name: str) -> Path | None:
    """The upload folder (``uploads/datasets/<hash>``) behind an ``imagefolder:`` name, or None."""
    if not name.startswith("imagefolder:"):
        return None
    path, base = Path(name[len("imagefolder:"):]).resolve(), datasets_dir().resolve()
    for p in (path, *path.parents):
        if p.parent == base and DATASET_NAME.match(p.name):
            return p
    return None


def dataset_upload(name: str) -> Upload | None:
    folder = dataset_folder(name)
    return upload_quota.read(folder, "dataset") if folder is not None and folder.is_dir() else None


def dataset_summary(name: str):
    """What an uploaded dataset holds (:class:`qcore.dataset_summary.Summary`): from its record, or read now
    for uploads made before records were kept. None when ``name`` is not an upload."""
    from qcore import dataset_summary as ds
    from qcore.folder_scan import ScanError

    up = dataset_upload(name)
    if up is None:
        return None
    if "summary" in up.info:
        return ds.Summary.from_dict(up.info["summary"])
    try:
        summary = ds.summarize(Path(name[len("imagefolder:"):]))
    except (ScanError, OSError) as exc:
        return ds.Summary(problems=[_scrub(str(exc), up.name, up.path)])
    try:  # read once, kept in the upload's record
        upload_quota.write_record(up.path, "dataset", up.name if up.info else "", up.bytes, uploaded=up.uploaded,
                                  summary=summary.to_dict())
    except OSError:
        pass
    return summary


def dataset_label(name: str) -> str | None:
    """``pets.zip · 2 classes, 118 images`` for an uploaded dataset (None for any other name)."""
    up = dataset_upload(name)
    if up is None:
        return "deleted upload" if dataset_folder(name) is not None else None
    s = up.info.get("summary") or {}
    classes = s.get("classes") or {}
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
    from qcore.store import Store

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
