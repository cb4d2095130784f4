"""A first C++ build is named in a sweep's progress (issue 24, item 7): "building the compiled package (first time,
C++)" while it runs, instead of the phase that asked for the program ("evaluating" for minutes)."""

from __future__ import annotations

from types import SimpleNamespace

from qcore.backends.buildcache import BuildCache, on_build
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs import sweep
from qcore.runs.progress import BUILD_PHASE
from qcore.runs.sweep_config import SweepConfig


def _build(cache: BuildCache, what: str):
    def build(path):
        path.write_bytes(b"program")
        return {"unit": "package"}

    return cache.get_or_build("aoti", {"what": what}, build, lambda p: p.read_bytes(), suffix=".pt2")


def test_on_build_hears_a_first_build_not_a_load(tmp_path):
    cache, heard = BuildCache(tmp_path), []
    with on_build(lambda kind, started: heard.append((kind, started))):
        _build(cache, "a")
        _build(cache, "a")  # from the cache: nothing to say
    _build(cache, "b")  # outside the block: nobody listens
    assert heard == [("aoti", True), ("aoti", False)]


def test_a_sweep_says_building_while_a_spec_builds_its_program_then_the_phase_again(tmp_path, monkeypatch):
    cache = BuildCache(tmp_path)
    spec = QuantSpec("int8", backend="pt2e")

    def measure_spec(p, s, phase, *more):  # a compiled backend: its evaluation batches' program is built on first sight
        phase("evaluate")
        _build(cache, s.label())
        phase("time")
        return Result(s, "resnet18", "fashion-mnist")

    monkeypatch.setattr(sweep, "prepare", lambda config, progress, cancel: SimpleNamespace(baseline_run_id=""))
    monkeypatch.setattr(sweep, "measure_baseline", lambda p: Result(FP32, "resnet18", "fashion-mnist"))
    monkeypatch.setattr(sweep, "measure_spec", measure_spec)
    said = []
    sweep.run_sweep(SweepConfig(), [spec], progress=lambda d, t, m: said.append((d, m)))
    label = spec.label()
    at = said.index((1 + 1 / 3, f"{label} · {BUILD_PHASE}"))
    assert said[at - 1] == (1 + 1 / 3, f"{label} · evaluating") and said[at + 1] == said[at - 1]
    assert said[at + 2] == (1 + 2 / 3, f"{label} · timing against FP32")
    said.clear()
    sweep.run_sweep(SweepConfig(), [spec], progress=lambda d, t, m: said.append((d, m)))  # cached: no build
    assert not any(BUILD_PHASE in m for _, m in said)
