"""qcore.guards.dataset_summary: what a folder holds, why it cannot be a dataset, a few thumbnails."""

from __future__ import annotations

import io

from PIL import Image

from qcore.guards import dataset_summary
from qcore.guards.dataset_summary import Summary
from tests import crafted as c


def _folder(root, per_class=(3, 2)):
    for k, n in zip(("cats", "dogs"), per_class):
        (root / k).mkdir(parents=True)
        for i in range(n):
            (root / k / f"{i}.png").write_bytes(c.small_png(40 * i, side=20))
    return root


def test_summary_counts_readable_unreadable_too_large_and_other_files(tmp_path):
    root = _folder(tmp_path / "pets")
    (root / "cats" / "cut.png").write_bytes(c.png(200, 200, 2)[:80])
    (root / "dogs" / "bomb.png").write_bytes(c.png(12000, 12000))
    (root / "dogs" / "notes.txt").write_text("hi")
    s = dataset_summary.summarize(root)
    assert (s.classes, s.unreadable, s.too_large, s.other_files, s.problems) == (
        {"cats": 3, "dogs": 2}, 1, 1, 1, [])
    assert s.text() == ("2 class(es), 5 image(s) (cats 3, dogs 2); 1 unreadable file(s) skipped; 1 image(s) over "
                        "40 MP skipped; 1 non-image file(s) ignored")
    assert Summary.from_dict(s.to_dict()) == s


def test_problems_say_why_a_folder_cannot_be_a_dataset(tmp_path):
    assert dataset_summary.summarize(_folder(tmp_path / "a", (3, 1))).problems == [
        "class(es) 'dogs' (1) have fewer than 2 readable images; each class needs one to calibrate on and one to "
        "evaluate"]
    assert dataset_summary.problems(Summary(classes={"cats": 5}))[0].startswith(
        "it holds one class folder with images ('cats')")
    assert "(it has 3 image(s) outside any class folder)" in dataset_summary.problems(Summary(loose_images=3))[0]


def test_large_folders_check_headers_only(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_summary, "FULL_CHECK_IMAGES", 3)
    root = _folder(tmp_path / "pets")
    (root / "cats" / "cut.png").write_bytes(c.png(200, 200, 2)[:80])  # its header is whole
    s = dataset_summary.summarize(root)
    assert not s.fully_checked and s.unreadable == 0 and s.classes["cats"] == 4
    assert s.text().endswith("headers checked; images are fully decoded when loaded")


def test_thumbnails_take_classes_in_turn(tmp_path):
    root = _folder(tmp_path / "pets")
    (root / "dogs" / "big.png").write_bytes(c.png(5000, 3000, 2))  # shrunk before it is converted
    thumbs = dataset_summary.thumbnails(root, n=4, side=16)
    assert [k for k, _ in thumbs] == ["cats", "dogs", "cats", "dogs"]
    assert all(max(Image.open(io.BytesIO(png)).size) <= 16 for _, png in thumbs)
