"""qcore.service.uploads: uploaded checkpoints and zips are checked by content, kept under a content-hash name, and
refused with the reason (leaving nothing behind) when they are not what they claim or try to escape; what
they hold is described, a job's uploads are kept, the quota removes the oldest, messages name no server path.
The crafted hostile inputs through these paths are in tests/test_hostile.py."""

import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from qcore import data
from qcore.data import DatasetError
from qcore.service import uploads
from tests import crafted as c


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_unpack_zip_returns_the_class_root(tmp_path):
    blob = _zip({f"upload/{c}/{i}.png": _png() for c in ("a", "b") for i in range(3)})
    root = uploads.unpack_zip(blob, tmp_path / "dest")
    assert root == tmp_path / "dest" / "upload"
    assert data.load_dataset(f"imagefolder:{root}", 16).classes == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["dest"]  # no temporary folder left behind


@pytest.mark.parametrize("evil", ["../evil.png", "a/../../evil.png", "/tmp/qcore-test-evil.png",
                                  "C:/evil.png", "..\\evil.png"])
def test_unpack_zip_refuses_paths_outside(tmp_path, evil):
    blob = _zip({"a/1.png": _png(), evil: b"owned"})
    with pytest.raises(DatasetError, match="refused"):
        uploads.unpack_zip(blob, tmp_path / "up" / "dest")
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing written, not even the destination
    assert not Path("/tmp/qcore-test-evil.png").exists()


def test_unpack_zip_refuses_symlinks_bombs_and_non_zips(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        uploads.unpack_zip(buf.getvalue(), tmp_path / "d1")
    many = _zip({f"a/{i}.png": b"x" for i in range(5)})
    with pytest.raises(DatasetError, match="5 files; at most 4"):
        uploads.unpack_zip(many, tmp_path / "d2", max_files=4)
    bomb = _zip({"a/zeros.png": b"\0" * 100_000})
    assert len(bomb) < 2_000
    with pytest.raises(DatasetError, match="100,000 bytes; at most 50,000"):
        uploads.unpack_zip(bomb, tmp_path / "d3", max_bytes=50_000)
    # a directory that under-declares the size: zipfile stops at the declared size, the CRC fails
    lying = bytearray(bomb)
    central = lying.rfind(b"PK\x01\x02")
    lying[central + 24:central + 28] = (1000).to_bytes(4, "little")
    with pytest.raises(DatasetError):
        uploads.unpack_zip(bytes(lying), tmp_path / "d4", max_bytes=50_000)
    not_zip = tmp_path / "photo.zip"
    not_zip.write_bytes(_png())  # the name says zip, the content does not
    with pytest.raises(DatasetError, match="not a zip"):
        uploads.unpack_zip(not_zip, tmp_path / "d5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.zip"]


def test_checkpoint_kind_is_read_from_the_content():
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    safetensors = struct.pack("<Q", len(header)) + header + b"\0" * 4
    assert uploads.checkpoint_kind(safetensors) == ".safetensors"
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    assert uploads.checkpoint_kind(buf.getvalue()) == ".pt"  # torch.save writes a zip archive
    with pytest.raises(uploads.UploadError, match="not a checkpoint"):
        uploads.checkpoint_kind(b"<html>not weights</html>")


def test_a_saved_checkpoint_is_named_by_its_hash_and_read_back(tmp_path):
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.ones(2, 3), "fc.bias": torch.zeros(2)}, buf)
    path, tensors, values = uploads.save_checkpoint(buf.getvalue())
    assert (tensors, values) == (2, 8) and path.parent == uploads.checkpoint_dir()
    assert uploads.CHECKPOINT_NAME.match(path.name) and uploads.checkpoint_path(path.name) == path
    with pytest.raises(uploads.UploadError, match=r"^the uploaded file is empty \(0 bytes\)"):
        uploads.save_checkpoint(b"")


def test_checkpoint_name_in_a_url_cannot_point_outside_the_uploads(tmp_path):
    outside = tmp_path / "a.pt"
    outside.write_bytes(b"PK\x03\x04")
    assert uploads.checkpoint_path(str(outside)) is None
    assert uploads.checkpoint_path("../" + "0" * 16 + ".pt") is None
    assert uploads.checkpoint_path("0" * 16 + ".pt") is None  # a valid name, but no such file


def test_a_zip_of_class_folders_becomes_a_dataset_once():
    blob = _zip({f"pets/{c}/{i}.png": _png() for c in ("cats", "dogs") for i in range(2)})
    name = uploads.save_dataset(blob)
    assert data.parse_name(name)[0] == "imagefolder" and name.endswith("/pets")
    assert uploads.save_dataset(blob) == name  # the same content: the same folder, not unpacked again
    assert uploads.uploaded_datasets() == [name]
    with pytest.raises(uploads.UploadError, match=r"^only\.zip cannot be a classifier's dataset: it holds one class "
                       r"folder with images \('only'\)"):
        uploads.save_dataset(_zip({"pets/only/1.png": _png(), "pets/only/2.png": _png()}), "only.zip")
    with pytest.raises(uploads.UploadError, match=r"^photo\.zip: the upload is not a zip archive"):
        uploads.save_dataset(_png(), "photo.zip")
    assert uploads.uploaded_datasets() == [name]  # nothing kept from the refused ones
    assert [u.name for u in uploads.all_uploads()] == ["the uploaded zip"]  # no record left behind either


def _pets(n: int = 3, root: str = "pets") -> list:
    return [c.Entry(f"{root}/{k}/{i}.png", c.small_png(30 * i)) for k in ("cats", "dogs") for i in range(n)]


def test_a_good_zip_still_unpacks_with_every_guard_on():
    blob = c.zip_bytes(_pets() + [c.Entry("pets/dogs/notes.txt", b"ignored"),
                                  c.Entry("__MACOSX/pets/._0.png", b"resource fork")])
    name = uploads.save_dataset(blob, "pets.zip")
    assert name.endswith("/pets") and uploads.dataset_label(name) == "pets.zip · 2 classes, 6 images"
    summary = uploads.dataset_summary(name)
    assert summary.classes == {"cats": 3, "dogs": 3} and summary.other_files == 1 and not summary.problems


def test_an_upload_made_before_records_were_kept_is_described_once():
    """Uploads stored by earlier versions have no record: they are read once, and recorded."""
    folder = uploads.datasets_dir() / "0123456789abcdef"
    for k in ("cats", "dogs"):
        (folder / "pets" / k).mkdir(parents=True)
        for i in range(2):
            (folder / "pets" / k / f"{i}.png").write_bytes(c.small_png(40 * i))
    name = f"imagefolder:{folder / 'pets'}"
    assert name in uploads.uploaded_datasets()
    assert uploads.dataset_summary(name).classes == {"cats": 2, "dogs": 2}
    up = uploads.dataset_upload(name)
    assert up.name == "upload 01234567" and up.info["summary"]["classes"] == {"cats": 2, "dogs": 2}
    assert uploads.dataset_label(name) == "upload 01234567 · 2 classes, 4 images"


def test_labels_name_uploads_by_file_and_anything_else_as_the_registry_does(tmp_path):
    name = uploads.save_dataset(c.zip_bytes(_pets(2)), "pets.zip")
    assert uploads.dataset_label(name) == "pets.zip · 2 classes, 4 images"
    assert uploads.dataset_label("fashion-mnist") == data.dataset_label("fashion-mnist") == "Fashion-MNIST"
    assert uploads.dataset_label(f"imagefolder:{tmp_path}/my-pets") == "folder my-pets"
    uploads.delete(uploads.dataset_folder(name))
    assert uploads.dataset_label(name) == "deleted upload" and uploads.dataset_upload(name) is None


def test_an_upload_a_job_uses_is_neither_deleted_nor_pushed_out_by_the_quota(monkeypatch):
    from qcore.runs.store import Store

    used = uploads.save_dataset(c.zip_bytes(_pets(2)), "used.zip")
    job = Store().submit_job({"model": "resnet18", "dataset": used, "weights": "auto"}, [])  # queued: in use
    with pytest.raises(uploads.UploadError, match="^used.zip is used by a queued or running job; cancel the job"):
        uploads.delete(uploads.dataset_folder(used))
    old, _, _ = uploads.save_checkpoint(_state_bytes(2), "old.pt")
    size = sum(u.bytes for u in uploads.all_uploads())
    monkeypatch.setenv("QCORE_UPLOAD_QUOTA_MB", str(size / 1e6))  # the next upload cannot fit beside both
    new, _, _ = uploads.save_checkpoint(_state_bytes(3), "new.pt")
    names = {u.name for u in uploads.all_uploads()}
    assert names == {"used.zip", "new.pt"} and not old.exists() and new.exists()  # the oldest unused went
    Store().update_job(job, state="done")
    uploads.delete(uploads.dataset_folder(used))
    assert {u.name for u in uploads.all_uploads()} == {"new.pt"}


def test_messages_name_the_users_file_never_a_server_path():
    from qcore.env.paths import data_home

    path, _, _ = uploads.save_checkpoint(_state_bytes(2), "mine.pt")
    text = f"could not load {path}: shape mismatch; see {data_home()}/worker.log"
    assert uploads.no_paths(text) == "could not load mine.pt: shape mismatch; see <qcore data>/worker.log"


def _state_bytes(n: int) -> bytes:
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.full((n, 3), float(n))}, buf)
    return buf.getvalue()
