"""What an upload holds, shown right after it is stored, and a way to delete it.

A dataset: its classes, images per class, what was skipped (unreadable files, images over the pixel limit,
non-images) and a few thumbnails. A checkpoint: its tensors and values, and whether it fits the chosen
model and dataset (checked on names and shapes, before Run). Whatever cannot work becomes a problem that
keeps Run disabled. No message names a server path: uploads are called by the file name the user gave.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from qcore.data.base import DatasetError
from qcore.data.registry import folder_path, get_dataset, parse_name
from qcore.runs.sweep import SweepConfig
from qcore.service import uploads

from .text import plain

__all__ = ["dataset", "checkpoint", "manage"]


@st.cache_data(show_spinner="Making thumbnails ...", max_entries=32)
def _thumbnails(name: str, stamp: float) -> list[tuple[str, bytes]]:
    from qcore.guards import dataset_summary
    from qcore.guards.folder_scan import ScanError

    try:
        return dataset_summary.thumbnails(folder_path(name))
    except (ScanError, OSError):
        return []


@st.cache_data(show_spinner="Checking that the checkpoint fits the model ...", max_entries=64)
def _fit(model: str, ckpt: str, stamp: float, dataset: str, classes: int, image_size: int, imagenet: bool) -> str:
    from qcore.nets.checkpoint_fit import fit_problem

    up = uploads.checkpoint_upload(uploads.checkpoint_dir() / ckpt)
    shapes = up.info.get("shapes")
    if shapes is None:  # uploaded before records were kept: read it again (it was checked then)
        from qcore.nets.weights import read_state_dict

        shapes = {k: list(v.shape) for k, v in read_state_dict(up.path, name=up.name).items()}
    return fit_problem(model, shapes, classes, image_size, imagenet, name=up.name) or ""


@st.cache_data(show_spinner=False, max_entries=64)
def _classes(dataset: str) -> tuple[int, bool] | None:
    """``(classes, are ImageNet classes)`` of a dataset, known without loading it (a built-in one from the
    registry, an upload from its summary); None when it is not known."""
    try:
        kind, folder = parse_name(dataset)
    except DatasetError:
        return None
    if folder is None:
        return len(get_dataset(kind).classes), False
    summary = uploads.dataset_summary(dataset)
    if summary is None or not summary.classes:
        return None
    from qcore.data.imagefolder import imagenet_folder

    return len(summary.classes), imagenet_folder(folder)


def dataset(where, name: str) -> list[str]:
    """Summary, thumbnails and Delete for an uploaded dataset; returns its problems."""
    up = uploads.dataset_upload(name)
    if up is None:
        return ["this upload was deleted; choose another dataset or upload it again"] if uploads.dataset_folder(
            name) else []
    summary = uploads.dataset_summary(name)
    where.caption(f"**{plain(up.name)}**: {plain(summary.text())}")
    thumbs = _thumbnails(name, up.uploaded)
    if thumbs:
        where.image([png for _, png in thumbs], caption=[plain(c) for c, _ in thumbs], width=64)  # class names
    where.button("Delete this upload", key="delete_dataset", icon=":material/delete:", on_click=_delete,
                 args=(up.path, "dataset"), help="removes the unpacked images from the server; results measured on "
                 "them stay")  # fmt: skip
    _delete_error(where)
    return [f"{up.name} cannot be used: {p}" for p in summary.problems]


def checkpoint(where, path: Path, model: str, dataset: str, image_size: int | None) -> list[str]:
    """What an uploaded checkpoint holds, whether it fits ``model`` on ``dataset``, and Delete."""
    up = uploads.checkpoint_upload(path)
    info = up.info
    held = f"{info['tensors']} tensors, {info['values'] / 1e6:.2f} M values" if "tensors" in info else "checked"
    where.caption(f"**{plain(up.name)}**: {held}")
    problems = []
    known = _classes(dataset)
    if known is not None and image_size:
        try:
            problem = _fit(model, path.name, up.uploaded, dataset, known[0], int(image_size), known[1])
        except ValueError as exc:
            problem = str(exc)
        if problem:
            problems.append(problem)
    where.button("Delete this checkpoint", key="delete_ckpt", icon=":material/delete:", on_click=_delete,
                 args=(path, "ckpt"))
    _delete_error(where)
    return problems


def manage() -> None:
    """Every upload with its size, against the quota, each with Delete."""
    from qcore.guards.upload_quota import quota_bytes

    items = uploads.all_uploads()
    total = sum(u.bytes for u in items)
    with st.expander(f"Uploads on this server: {len(items)}, {total / 1e6:,.1f} MB of {quota_bytes() / 1e6:,.0f} MB",
                     icon=":material/folder:"):
        st.caption("When a new upload would pass the quota, the oldest ones are removed first (never one a "
                   "queued or running job uses).")
        for i, u in enumerate(items):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.markdown(f"{u.kind} **{plain(u.name)}** · {u.bytes / 1e6:,.1f} MB")
            c2.button("Delete", key=f"delete_upload_{i}", icon=":material/delete:", on_click=_delete,
                      args=(u.path, "any"))
        _delete_error(st)


def _delete(path: Path, what: str) -> None:
    """Button callback (it runs before the widgets, so it may reset the dataset selection)."""
    st.session_state.pop("upload_delete_error", None)
    chosen = st.session_state.get("dataset")
    try:
        uploads.delete(path)
    except ValueError as exc:
        st.session_state["upload_delete_error"] = str(exc)
        return
    if what == "dataset" or (chosen and uploads.dataset_folder(chosen) == path):
        st.session_state["dataset"] = SweepConfig().dataset  # the default one
    if what == "ckpt" or uploads.checkpoint_path(st.query_params.get("ckpt")) is None:
        st.query_params.pop("ckpt", None)


def _delete_error(where) -> None:
    if err := st.session_state.pop("upload_delete_error", None):
        where.error(plain(err))
