"""qcore.guards.upload_quota: records beside uploads, and the quota: oldest out, never the new or a used one."""

from __future__ import annotations

import os

import pytest

from qcore.guards import upload_quota
from qcore.guards.upload_quota import Upload


def _upload(tmp_path, name: str, size: int, when: float, folder: bool = False) -> Upload:
    path = tmp_path / name
    if folder:
        path.mkdir()
        (path / "x.bin").write_bytes(b"\0" * size)
    else:
        path.write_bytes(b"\0" * size)
    upload_quota.write_record(path, "dataset" if folder else "checkpoint", f"{name}.orig", size, tensors=1)
    rec = upload_quota.record_path(path)
    body = rec.read_text().replace('"uploaded": ', f'"uploaded": {when}, "was": ')
    rec.write_text(body)
    return upload_quota.read(path, "dataset" if folder else "checkpoint")


def test_records_keep_the_users_name_and_what_it_holds(tmp_path):
    up = _upload(tmp_path, "abc.pt", 10, 5.0)
    assert (up.name, up.bytes, up.uploaded, up.info) == ("abc.pt.orig", 10, 5.0, {"tensors": 1})
    bare = tmp_path / "0123456789abcdef"
    bare.mkdir()
    (bare / "a.png").write_bytes(b"12345")
    unrecorded = upload_quota.read(bare, "dataset")
    assert (unrecorded.name, unrecorded.bytes) == ("upload 01234567", 5)


def test_the_oldest_go_first_but_never_the_new_one_or_one_in_use(tmp_path):
    old = _upload(tmp_path, "old", 40, 1.0, folder=True)
    used = _upload(tmp_path, "used.pt", 40, 2.0)
    mid = _upload(tmp_path, "mid.pt", 40, 3.0)
    new = _upload(tmp_path, "new.pt", 40, 4.0)
    removed = upload_quota.enforce([old, used, mid, new], new.path, {used.path}, quota=90)
    assert [u.path.name for u in removed] == ["old", "mid.pt"]
    assert sorted(os.listdir(tmp_path)) == ["new.pt", "new.pt.json", "used.pt", "used.pt.json"]


def test_an_upload_larger_than_the_quota_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("QCORE_UPLOAD_QUOTA_MB", "0.00005")  # 50 bytes
    assert upload_quota.quota_bytes() == 50
    big = _upload(tmp_path, "big.pt", 60, 1.0)
    with pytest.raises(ValueError, match="it takes 60 bytes once stored; the uploads quota is 50 bytes"):
        upload_quota.enforce([big], big.path, set())
