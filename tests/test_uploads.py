"""qcore.uploads: uploaded checkpoints and zips are checked by content, kept under a content-hash name, and
refused with the reason (leaving nothing behind) when they are not what they claim or try to escape."""

import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from qcore import data, uploads
from qcore.data import DatasetError


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
    with pytest.raises(uploads.UploadError, match="empty"):
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
    with pytest.raises(DatasetError, match="1 class folder"):
        uploads.save_dataset(_zip({"pets/only/1.png": _png()}))
    with pytest.raises(DatasetError, match="not a zip archive"):
        uploads.save_dataset(_png())
    assert uploads.uploaded_datasets() == [name]  # nothing kept from the refused ones
