"""The build cache: keys that change with everything that defines a build, hits, bad entries rebuilt."""

import copy
import json

import pytest
import torch
from torch import nn

from qcore.backends import buildcache
from qcore.backends.buildcache import BuildCache, BuildRecord, digest, summarize


@pytest.fixture
def cache(tmp_path):
    return BuildCache(tmp_path / "builds")


def _writer(calls, payload=b"compiled"):
    def build(path):
        calls.append(path)
        path.write_bytes(payload)
        return {"unit": "program", "note": "from the builder"}

    return build


def _loader(path):
    blob = path.read_bytes()
    if not blob.startswith(b"compiled"):
        raise ValueError("not a program")
    return blob


def test_digest_changes_with_each_part_and_not_otherwise():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    base = digest({"w": t, "shape": [1, 3, 32, 32], "opts": {"freezing": True}})
    assert base == digest({"opts": {"freezing": True}, "shape": [1, 3, 32, 32], "w": t.clone()})  # order, copies
    changed = [
        {"w": t + 1e-6, "shape": [1, 3, 32, 32], "opts": {"freezing": True}},  # a weight
        {"w": t.double(), "shape": [1, 3, 32, 32], "opts": {"freezing": True}},  # its dtype
        {"w": t.reshape(3, 2), "shape": [1, 3, 32, 32], "opts": {"freezing": True}},  # its shape
        {"w": t, "shape": [32, 3, 32, 32], "opts": {"freezing": True}},  # the input shape
        {"w": t, "shape": [1, 3, 32, 32], "opts": {"freezing": False}},  # an option
    ]
    assert len({base, *(digest(c) for c in changed)}) == 6
    assert digest("1") != digest(1) != digest(1.0)  # types are part of the key


def test_key_includes_kind_and_environment(cache, monkeypatch):
    parts = {"what": "abc"}
    k = cache.key("aoti", parts)
    assert k == cache.key("aoti", parts) and k != cache.key("xnnpack", parts)
    monkeypatch.setattr(buildcache, "environment", lambda: {"torch": "9.9", "cpu": "another"})
    assert cache.key("aoti", parts) != k  # a new torch or another CPU makes a new build


def test_quantized_graph_key_follows_weights_calibration_and_spec(one_thread):
    """The PT2E key is the quantized graph: it changes with the FP32 weights, the calibration data and the
    spec, and two quantizations of the same inputs give the same key."""
    from qcore.backends.pt2e_int8 import _quantizer, quantized_graph
    from qcore.quant.spec import QuantSpec

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(8, 3, 16, 16, generator=g)]
    ex = calib[0][:1]
    spec = QuantSpec("int8", backend="pt2e")

    def key(m, c, s):
        return digest(quantized_graph(m.eval(), _quantizer(s), c, ex)[0])

    base = key(model, calib, spec)
    assert key(model, calib, spec) == base
    heavier = copy.deepcopy(model)
    with torch.no_grad():
        heavier[0].weight.mul_(1.5)
    keys = {
        base,
        key(heavier, calib, spec),
        key(model, [calib[0] * 2], spec),
        key(model, calib, spec.replace(calibration="percentile", percentile=99.0)),
    }
    assert len(keys) == 4


def test_miss_then_hit_with_the_first_build_time(cache):
    calls = []
    obj, rec = cache.get_or_build("prog", {"what": 1}, _writer(calls), _loader)
    assert obj == b"compiled" and len(calls) == 1 and not rec.cached
    assert rec.first_build_seconds == rec.seconds and rec.meta["note"] == "from the builder"
    obj2, rec2 = cache.get_or_build("prog", {"what": 1}, _writer(calls), _loader)
    assert obj2 == b"compiled" and len(calls) == 1 and rec2.cached and rec2.key == rec.key
    assert rec2.first_build_seconds == pytest.approx(json.loads(
        (cache.root / f"prog-{rec.key}.json").read_text())["build_seconds"])  # fmt: skip
    assert rec2.meta == {"unit": "program", "note": "from the builder"}
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]  # no temporary file left
    _, rec3 = cache.get_or_build("prog", {"what": 2}, _writer(calls), _loader)
    assert not rec3.cached and len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no-metadata", "bad-metadata"])
def test_a_bad_entry_is_rebuilt_never_a_crash(cache, damage):
    calls = []
    _, rec = cache.get_or_build("prog", {"what": 1}, _writer(calls), _loader)
    path, meta = cache.paths("prog", rec.key, ".bin")
    if damage == "truncate":
        path.write_bytes(b"comp")
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff" * 10)
    elif damage == "no-metadata":
        meta.unlink()
    else:
        meta.write_text("{not json")
    obj, rec2 = cache.get_or_build("prog", {"what": 1}, _writer(calls), _loader)
    assert obj == b"compiled" and len(calls) == 2 and not rec2.cached
    assert bool(rec2.rebuilt_because) == (damage != "no-metadata")  # an incomplete entry is just a miss
    _, rec3 = cache.get_or_build("prog", {"what": 1}, _writer(calls), _loader)
    assert rec3.cached and len(calls) == 2


def test_a_failing_build_leaves_nothing(cache):
    def broken(path):
        path.write_bytes(b"half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cache.get_or_build("prog", {"what": 1}, broken, _loader)
    assert list(cache.root.iterdir()) == []


def test_least_recently_used_entries_are_pruned(tmp_path):
    cache = BuildCache(tmp_path / "b", max_mb=0.0025)  # room for two 1 kB entries
    keys = []
    for i in range(3):
        _, rec = cache.get_or_build("prog", {"what": i}, _writer([], b"compiled" + b"x" * 1000), _loader)
        keys.append(rec.key)
    kept = {p.name.split("-")[1].split(".")[0] for p in cache.entries()}
    assert keys[2] in kept and keys[0] not in kept


def test_summary_note():
    built = [BuildRecord("aoti", "a", 30.0, 30.0, False, meta={"unit": "package"})]
    assert summarize(built) == (30.0, 30.0, "first build: 30.0 s (1 package built and cached for the next run)")
    mixed = [BuildRecord("aoti", "a", 0.5, 30.0, True, meta={"unit": "package"}),
             BuildRecord("aoti", "b", 12.0, 12.0, False, meta={"unit": "package"}, rebuilt_because="BadZipFile")]
    now, first, note = summarize(mixed)
    assert (now, first) == (12.5, 42.0)
    assert note.startswith("build: 12.5 s (1 package loaded from the cache, 1 package built now), first build 42.0 s")
    assert "BadZipFile" in note
    assert summarize([]) == (None, None, "")
