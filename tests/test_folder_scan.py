"""qcore.guards.folder_scan: a bounded walk of a class-per-folder tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qcore.guards import folder_scan
from qcore.guards.folder_scan import ScanError, ScanLimits


def _tree(root: Path) -> Path:
    for path in ("cats/1.png", "cats/deep/2.jpg", "cats/notes.txt", "dogs/3.PNG", ".hidden/4.png", "cats/.x.png",
                 "loose.png", "empty/readme.md", "__MACOSX/cats/._1.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x")
    return root


def test_scan_finds_images_per_class_and_counts_the_rest(tmp_path):
    s = folder_scan.scan(_tree(tmp_path / "data"))
    assert {k: [p.name for p in v] for k, v in s.classes.items()} == {"cats": ["1.png", "2.jpg"], "dogs": ["3.PNG"]}
    assert (s.empty, s.other_files, s.loose_images, s.images) == (["empty"], 2, 1, 3)


def test_links_below_a_class_are_not_followed(tmp_path):
    root = _tree(tmp_path / "data")
    os.symlink(root, root / "cats" / "loop")  # a cycle, if it were followed
    assert [p.name for p in folder_scan.scan(root).classes["cats"]] == ["1.png", "2.jpg"]


def test_limits_stop_the_walk_with_a_message(tmp_path):
    root = _tree(tmp_path / "data")
    with pytest.raises(ScanError, match=r"is not a class-per-folder tree of images: after more than 4 entries"):
        folder_scan.scan(root, ScanLimits(max_entries=4))
    deep = root / "cats" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    with pytest.raises(ScanError, match=r"has folders more than 2 levels deep"):
        folder_scan.scan(root, ScanLimits(max_depth=2))


@pytest.mark.parametrize("where", ["/", "/proc", "/sys/kernel", "/dev"])
def test_system_folders_are_refused_at_once(where):
    with pytest.raises(ScanError, match="is a system folder, not a dataset"):
        folder_scan.scan(Path(where))


def test_missing_file_and_unreadable_roots(tmp_path):
    with pytest.raises(ScanError, match="does not exist"):
        folder_scan.scan(tmp_path / "nope")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(ScanError, match="is a file, not a folder"):
        folder_scan.scan(tmp_path / "f.png")


def test_unreadable_folders_are_skipped_and_counted(tmp_path, monkeypatch):
    root = _tree(tmp_path / "data")
    locked, real = root / "cats" / "deep", os.scandir

    def scandir(path="."):  # what a folder without read permission does (the tests may run as root)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    s = folder_scan.scan(root)
    assert s.unreadable_dirs == 1 and [p.name for p in s.classes["cats"]] == ["1.png"]
