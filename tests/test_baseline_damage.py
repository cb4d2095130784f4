"""Issue 28, item 3: a cached baseline cut, empty or with a broken .json is named and passed over (the user's copy
moved aside), and the next one used: the shipped one, else a new training."""

from __future__ import annotations

import shutil

import pytest

from qcore.nets import train

SHIPPED = sorted(train.SHIPPED.glob("*.safetensors"))[0]
MODEL, DATA = SHIPPED.name.split("__")[:2]


def _user_copy():
    recipe = train.recipe_for(MODEL, DATA)
    path = train.baseline_path(MODEL, DATA, recipe)
    assert path.name == SHIPPED.name
    shutil.copyfile(SHIPPED, path)
    shutil.copyfile(SHIPPED.with_suffix(".json"), path.with_suffix(".json"))
    return path, recipe


@pytest.mark.parametrize("damage", ["cut", "empty", "json"])
def test_a_damaged_user_baseline_is_named_moved_aside_and_the_shipped_one_used(damage):
    path, recipe = _user_copy()
    if damage == "cut":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.with_suffix(".json").write_text('{"classes": [')
    notes: list[str] = []
    found = train.find_baseline(MODEL, DATA, recipe, notes)
    assert found == train.SHIPPED / path.name
    bad = path.with_suffix(".json") if damage == "json" else path
    assert len(notes) == 1 and str(bad) in notes[0] and "moved aside" in notes[0]
    assert not path.exists() and list(path.parent.glob(f"{path.name}.damaged-*"))
    train.baseline_meta(found)  # the one used reads


def test_a_damaged_shipped_baseline_means_none_cached(monkeypatch, tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copyfile(SHIPPED, shipped / SHIPPED.name)
    (shipped / SHIPPED.with_suffix(".json").name).write_text("")
    monkeypatch.setattr(train, "SHIPPED", shipped)
    notes: list[str] = []
    assert train.find_baseline(MODEL, DATA, None, notes) is None  # the caller trains one, saying why
    assert str(shipped / SHIPPED.with_suffix(".json").name) in notes[0]


def test_a_second_damage_in_the_same_second_keeps_the_first_copy(tmp_path, monkeypatch):
    from qcore.env import paths
    from qcore.nets.baseline_check import move_aside

    monkeypatch.setattr(paths.time, "strftime", lambda fmt, *a: "20261205-120000")  # one clock second for both
    path = tmp_path / "m__d__r.safetensors"
    kept = []
    for text in ("first", "second"):
        path.write_text(text)
        path.with_suffix(".json").write_text(text + " record")
        kept.append(move_aside(path))
    assert kept[0] != kept[1] and [p.read_text() for p in kept] == ["first", "second"]
    records = sorted(p.name for p in tmp_path.glob("m__d__r.json.damaged-*"))
    assert records == ["m__d__r.json.damaged-20261205-120000", "m__d__r.json.damaged-20261205-120000-2"]
    assert not path.exists() and not path.with_suffix(".json").exists()


def test_a_baseline_and_its_record_are_moved_aside_under_one_name_when_the_clock_ticks_between(tmp_path, monkeypatch):
    from qcore.env import paths
    from qcore.nets.baseline_check import move_aside

    stamps = iter(["20261205-115959", "20261205-120000"])  # a second boundary between two reads of the clock
    monkeypatch.setattr(paths.time, "strftime", lambda fmt, *a: next(stamps))
    path = tmp_path / "m__d__r.safetensors"
    path.write_text("weights")
    path.with_suffix(".json").write_text("record")
    out = move_aside(path)
    assert out.name == "m__d__r.safetensors.damaged-20261205-115959"
    assert (tmp_path / "m__d__r.json.damaged-20261205-115959").read_text() == "record"
