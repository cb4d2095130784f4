"""``auto`` measures before it trusts an order (issue 30, item 1): the first sweep that needs an INT8 backend for a
(model, batch size, input size) builds and times each candidate, records the p50s and picks the fastest.

The oracle is the latencies the fake backends are given: the timer is replaced by one that reports them, so no
assertion rests on a wall time. One test probes real backends (fx and torchao, dynamic INT8) on a small model."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qcore.backends import Quantized, list_backends, resolve
from qcore.backends import auto as auto_policy
from qcore.backends.base import Backend, registered
from qcore.env.paths import data_home
from qcore.metrics.measure import Latency
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs import auto_probe, auto_status, estimate, probe_measure, sweep
from qcore.runs.sweep_config import SweepConfig

INT8 = QuantSpec("int8")
MS = {"fx": 8.0, "pt2e": 2.0, "xnnpack": 3.0}  # the latencies the fakes are timed at: pt2e is the fastest


class Fake(Backend):
    kinds = ("static",)

    def __init__(self, name: str, fail: str = "", fail_on_call: bool = False, refuse: str = ""):
        self.name, self.fail, self.fail_on_call, self.refuse, self.built = name, fail, fail_on_call, refuse, 0

    def unsupported(self, spec, device):
        return self.refuse if self.refuse and spec.granularity == "per-tensor" else None

    def quantize(self, model, spec, calib, example, device):
        self.built += 1
        if self.fail and not self.fail_on_call:
            raise RuntimeError(self.fail)

        def run(x):
            if self.fail:
                raise RuntimeError(self.fail)
            return x

        return Quantized(run, self.name, "native", device, {})


@pytest.fixture
def fakes(monkeypatch):
    """fx, pt2e and xnnpack replaced by fakes, measured in this process (they are not registered in a child's); the
    timer reports :data:`MS`; ``timed`` holds what each timing timed (a block, then what of it was not cut)."""
    monkeypatch.delenv(auto_probe.ENV, raising=False)
    monkeypatch.setattr(auto_probe, "measure_candidates", probe_measure.measure_here)
    list_backends()  # the built-in backends loaded, then replaced
    table = {name: Fake(name) for name in MS}
    for name, backend in table.items():
        monkeypatch.setitem(registered(), name, backend)
    monkeypatch.delitem(registered(), "pt2e-openvino")  # a fourth candidate, real: these tests choose among three
    timed = []

    def timer(fns, *, device="cpu", budget_s=20.0, protocol=None):
        timed.append(list(fns))
        return {n: Latency([MS[n]] * 7) for n in fns}

    monkeypatch.setattr(probe_measure, "time_interleaved", timer)
    return SimpleNamespace(table=table, timed=timed)


def _prepared(**config) -> SimpleNamespace:
    """What the probe reads of a prepared sweep (qcore.runs.sweep.Prepared)."""
    x = torch.zeros(1, 3, 32, 32)
    return SimpleNamespace(config=SweepConfig(**{"model": "resnet18", **config}), device="cpu", example=x, calib=[x],
                           loaded=SimpleNamespace(model=nn.Identity(), weights="none"), baseline_run_id="",
                           manifest={}, best_fp32="fp32 eager")  # fmt: skip


def _probe(p=None, specs=(INT8,), cancel=lambda: False):
    """The probe's notes by kind (each spec of a kind gets the same one), and what it said."""
    said = []
    notes = auto_probe.probe_auto(p or _prepared(), list(specs), said.append, cancel)
    return {s.kind: n[0] for s, n in notes.items()}, said


def test_the_probe_picks_the_fastest_records_it_and_says_so(fakes):
    fakes.table["fx"].own_threads = True  # its own thread pool: built and timed alone, after torch's
    notes, said = _probe()
    steps = ["pt2e 1/3", "xnnpack 2/3", "timing pt2e, xnnpack", "fx 3/3", "timing fx"]
    assert said == [f"{auto_probe.PHASE}: {step}" for step in steps]
    # xnnpack (3 ms) is over 1.25x pt2e's 2 ms after the first second: not timed further; fx (8 ms), in a block of
    # its own, is over 1.25x the 2 ms the earlier block measured: cut as well
    assert fakes.timed == [["pt2e", "xnnpack"], ["pt2e"], ["fx"]]
    point = auto_policy.measured_point("static", "resnet18", 1, 32)
    assert point["p50_ms"] == MS and point["source"].startswith("auto probe, ") and "failed" not in point
    cut = " (timed 1 s only: over 1.25x the fastest)"
    assert f"pt2e p50 2.00 ms, xnnpack p50 3.00 ms{cut}, fx p50 8.00 ms{cut}" in notes["static"]
    assert "resnet18 batch 1 at 32x32" in notes["static"] and "stored in auto-backends.json" in notes["static"]
    choice = resolve(INT8, "cpu", model="resnet18", batch_size=1)
    assert choice.backend.name == "pt2e"
    assert "measured on this machine" in choice.why and "auto probe, " in choice.why  # what and when
    line = auto_status.status_text()
    assert line.startswith("auto: measured on this machine for resnet18 batch 1 (pt2e fastest), 20")


def test_a_measured_point_is_not_probed_again_and_a_new_one_is(fakes):
    _probe()
    builds = sum(b.built for b in fakes.table.values())
    assert _probe() == ({}, []) and sum(b.built for b in fakes.table.values()) == builds
    notes, _ = _probe(_prepared(batch_size=8))  # another batch size: another point
    assert "static" in notes and len(auto_policy.load_measured()) == 2


def test_nothing_to_choose_is_not_probed(fakes):
    assert _probe(specs=[QuantSpec("int8", backend="fx"), QuantSpec("fp16"), QuantSpec("int8", mode="dynamic")]) \
        == ({}, [])  # fmt: skip
    for name in ("pt2e", "xnnpack"):
        fakes.table[name].refuse = "per channel only"
    assert _probe(specs=[QuantSpec("int8", granularity="per-tensor")]) == ({}, [])  # fx alone can run it


@pytest.mark.parametrize("on_call", [False, True], ids=["at-quantize", "at-first-call"])
def test_a_backend_that_fails_to_build_is_recorded_with_its_reason_and_never_picked(fakes, on_call):
    fakes.table["pt2e"].fail, fakes.table["pt2e"].fail_on_call = "no C++ compiler", on_call
    notes, _ = _probe()
    assert "pt2e failed to build: RuntimeError: no C++ compiler" in notes["static"]
    point = auto_policy.measured_point("static", "resnet18", 1, 32)
    assert point["p50_ms"] == {"fx": 8.0, "xnnpack": 3.0}
    assert point["failed"] == {"pt2e": "RuntimeError: no C++ compiler"}
    assert resolve(INT8, "cpu", model="resnet18", batch_size=1).backend.name == "xnnpack"
    # tried last: only where nothing measured can run the spec, and the reason says so
    for name in ("fx", "xnnpack"):
        fakes.table[name].refuse = "per channel only"
    choice = resolve(QuantSpec("int8", granularity="per-tensor"), "cpu", model="resnet18", batch_size=1)
    assert choice.backend.name == "pt2e" and "pt2e failed to build when auto measured it here" in choice.why


def test_every_backend_failing_is_recorded_and_the_default_order_stays(fakes):
    for b in fakes.table.values():
        b.fail = "broken"
    notes, _ = _probe()
    assert "none built" in notes["static"]
    assert auto_policy.measured_point("static", "resnet18", 1, 32)["failed"].keys() == set(MS)
    assert auto_policy.ranking("static", "resnet18", 1) == ([], "")
    assert _probe() == ({}, [])  # recorded: not built again each sweep


@pytest.mark.parametrize("after", [1, 2, 3, 4])  # cancelled before the 2nd or 3rd build, before timing, at the end
def test_a_probe_cancelled_halfway_records_nothing(fakes, after):
    checks = []

    def cancel():
        checks.append(1)
        return len(checks) > after

    assert _probe(cancel=cancel)[0] == {}
    assert not (data_home() / auto_policy.MEASURED_FILE).exists()
    assert resolve(INT8, "cpu", model="resnet18", batch_size=1).backend.name == auto_policy.ORDER["static"][0]


@pytest.mark.parametrize("content", ["{broken", "[1, 2]", "\udcff"], ids=["bad-json", "not-a-table", "not-utf8"])
def test_a_corrupt_file_is_named_and_measured_again(fakes, content):
    path = data_home() / auto_policy.MEASURED_FILE
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert auto_policy.file_problem().startswith("auto-backends.json was unreadable (")
    notes, _ = _probe()
    assert "(auto-backends.json was unreadable (" in notes["static"] and "): measured again)" in notes["static"]
    assert json.loads(path.read_text())["entries"][0]["p50_ms"] == MS  # replaced whole
    assert auto_policy.file_problem() is None


def test_another_machines_file_is_ignored_named_and_replaced(fakes):
    auto_policy.record_measurement("static", "resnet18", 1, 32, {"fx": 1.0, "pt2e": 9.0}, "elsewhere")
    path = data_home() / auto_policy.MEASURED_FILE
    body = json.loads(path.read_text())
    body["machine"]["torch"] = "0.0"
    path.write_text(json.dumps(body))
    assert resolve(INT8, "cpu", model="resnet18", batch_size=1).backend.name == auto_policy.ORDER["static"][0]
    notes, _ = _probe()
    assert "another machine's measurements (its torch differ): measured again" in notes["static"]
    assert resolve(INT8, "cpu", model="resnet18", batch_size=1).backend.name == "pt2e"


def test_opting_out_uses_the_default_order_and_builds_nothing(fakes, monkeypatch):
    assert _probe(_prepared(auto_probe=False)) == ({}, [])
    monkeypatch.setenv(auto_probe.ENV, "off")
    assert _probe() == ({}, [])
    assert sum(b.built for b in fakes.table.values()) == 0
    assert resolve(INT8, "cpu", model="resnet18", batch_size=1).backend.name == auto_policy.ORDER["static"][0]


def _sweep(monkeypatch, config: SweepConfig, cancel=None):
    """run_sweep with the model, data and measuring replaced: what is left is the probe and the backend choice."""

    def measure_spec(p, spec, phase, *more):  # (more: the progress and cancel a spec's own steps may take)
        choice = resolve(spec, p.device, model=p.config.model, batch_size=p.config.batch_size)
        return Result(spec, p.config.model, "fashion-mnist", backend=choice.backend.name, notes=[choice.why])

    monkeypatch.setattr(sweep, "prepare", lambda config, progress, cancel: _prepared(**config.to_dict()))
    monkeypatch.setattr(sweep, "measure_baseline", lambda p: Result(FP32, "resnet18", "fashion-mnist"))
    monkeypatch.setattr(sweep, "measure_spec", measure_spec)
    said = []
    rows = sweep.run_sweep(config, [INT8, QuantSpec("int8", backend="fx"), QuantSpec("int4", mode="weight-only")],
                           progress=lambda d, t, m: said.append((d, m)), cancel=cancel)  # fmt: skip
    return rows, said


def test_a_sweep_probes_before_its_first_spec_once_and_its_rows_say_so(fakes, monkeypatch):
    rows, said = _sweep(monkeypatch, SweepConfig(model="resnet18"))
    probing = [(d, m) for d, m in said if m.startswith(auto_probe.PHASE)]
    assert probing[0] == (1, f"{auto_probe.PHASE}: fx 1/3") and {d for d, _ in probing} == {1}
    assert said.index(probing[-1]) < said.index((1, f"{INT8.label()} · quantizing and calibrating"))
    auto_row, fx_row, int4_row = rows[1:]
    assert auto_row.backend == "pt2e" and any(n.startswith("auto measured which static INT8") for n in auto_row.notes)
    assert not any("auto measured" in n for n in fx_row.notes + int4_row.notes)  # named or another kind: not probed
    rows, said = _sweep(monkeypatch, SweepConfig(model="resnet18"))
    assert not any(auto_probe.PHASE in m for _, m in said) and rows[1].backend == "pt2e"
    assert not any("auto measured" in n for n in rows[1].notes)


def test_a_sweep_without_the_probe_and_a_cancelled_one(fakes, monkeypatch):
    rows, said = _sweep(monkeypatch, SweepConfig(model="resnet18", auto_probe=False))
    assert rows[1].backend == "fx" and not any(auto_probe.PHASE in m for _, m in said)
    checks = []

    def cancel():  # the Cancel button pressed while the second backend builds
        checks.append(1)
        return len(checks) > 2

    rows, _ = _sweep(monkeypatch, SweepConfig(model="resnet18"), cancel=cancel)
    assert [r.status for r in rows[1:]] == ["cancelled"] * 3
    assert auto_policy.load_measured() == []


def test_the_setting_travels_with_the_job_and_the_cli_flag_parses(fakes):
    from qcore.cli import build_parser

    assert SweepConfig().auto_probe is True
    assert SweepConfig.from_dict(SweepConfig(auto_probe=False).to_dict()).auto_probe is False
    assert SweepConfig.from_dict({"model": "resnet18"}).auto_probe is True  # a job stored before the setting
    with pytest.raises(ValueError, match="auto_probe='no' is not allowed"):
        SweepConfig(auto_probe="no")
    parser = build_parser()
    assert parser.parse_args(["sweep"]).auto_probe == "on"
    assert parser.parse_args(["sweep", "--auto-probe", "off"]).auto_probe == "off"
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "--auto-probe", "maybe"])


def test_the_estimate_counts_a_first_probe_and_home_says_it_is_to_come(fakes):
    config = SweepConfig(model="resnet18")
    first = estimate.job_seconds(config.to_dict(), [INT8])
    off = estimate.job_seconds({**config.to_dict(), "auto_probe": False}, [INT8])
    names = list(MS)
    assert first.seconds - off.seconds == pytest.approx(estimate.probe_seconds(names))
    assert first.steps[0] == off.steps[0]  # the probe runs after the FP32 row, before the first spec
    assert "for auto to measure which INT8 backend is fastest here" in first.basis
    line = auto_status.status_text()
    assert line.startswith("auto: not measured on this machine yet; the first sweep measures") and "about" in line
    _probe()
    after = estimate.job_seconds(config.to_dict(), [INT8])  # measured now: no probe (the row is pt2e's, its builds)
    assert after.seconds == estimate.job_seconds({**config.to_dict(), "auto_probe": False}, [INT8]).seconds
    assert "for auto to measure" not in after.basis


def test_a_real_probe_of_fx_and_torchao_dynamic_int8(fashion_mnist, mobilenet_checkpoint, monkeypatch, one_thread):
    monkeypatch.delenv(auto_probe.ENV, raising=False)
    config = SweepConfig(model="mobilenet_v3_small", weights=str(mobilenet_checkpoint), calib_size=16,
                         eval_limit=16, calib_batch_size=16, fp32_compiled=False)  # fmt: skip
    p = sweep.prepare(config)
    spec = QuantSpec("int8", mode="dynamic")
    names = auto_probe.candidates(spec, "cpu")
    if len(names) < 2:
        pytest.skip(f"one dynamic INT8 backend here ({names}): nothing to choose")
    notes = auto_probe.probe_auto(p, [spec], lambda m: None, lambda: False, seconds=0.2)
    point = auto_policy.measured_point("dynamic", "mobilenet_v3_small", 1, 32)
    assert set(point["p50_ms"]) | set(point.get("failed", {})) == set(names)
    fastest = min(point["p50_ms"], key=point["p50_ms"].get)
    assert resolve(spec, "cpu", model="mobilenet_v3_small", batch_size=1).backend.name == fastest
    assert f"{fastest} p50 " in notes[spec][0]


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))


class Dies(nn.Module):
    """A model whose first run ends its process (status 3): a backend that crashes the probe's process."""

    def forward(self, x):
        os._exit(3)


def test_a_probe_process_that_dies_fails_its_backends_and_a_cancel_kills_it():
    x = torch.randn(1, 3, 8, 8)
    spec = QuantSpec("int8", mode="dynamic")
    out = probe_measure.measure_apart(Dies(), spec, [x], x, "cpu", ["fx", "torchao"], 0.1, lambda m: None,
                                      lambda: False)  # fmt: skip
    assert out["p50"] == {} and set(out["failed"]) == {"fx", "torchao"}
    assert out["failed"]["fx"] == "the probe's process exited with status 3"
    said = []
    out = probe_measure.measure_apart(_tiny(), spec, [x], x, "cpu", ["fx", "torchao"], 30.0, said.append,
                                      lambda: bool(said))  # fmt: skip
    assert out is None and said == [f"{auto_probe.PHASE}: fx 1/2"]  # killed at its first word, not 60 s later


def test_a_backend_the_probe_cannot_find_fails_by_name_and_the_others_are_measured():
    x = torch.randn(1, 3, 8, 8)
    out = probe_measure.measure_apart(_tiny(), QuantSpec("int8", mode="dynamic"), [x], x, "cpu",
                                      ["fx", "no-such-backend"], 0.1, lambda m: None, lambda: False)  # fmt: skip
    assert set(out["p50"]) == {"fx"} and out["p50"]["fx"] > 0
    assert out["failed"] == {"no-such-backend": "KeyError: 'no-such-backend'"}


# A child that follows the probe's protocol and logs when it builds and times: argv NAMES LOG BUILD_S TIME_S
FAKE_CHILD = """
import json, sys, time
names, log, build_s, time_s = sys.argv[1].split(","), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def note(what):
    with open(log, "a") as f:
        f.write(json.dumps([sys.argv[1], what, time.monotonic()]) + "\\n")
note("build")
for n in names:
    print("qcore-probe building " + n, flush=True)
    time.sleep(build_s)
note("built")
print("qcore-probe built", flush=True)
word = sys.stdin.readline().split()
if word[:1] != ["time"]:
    sys.exit(0)
note("time")
note("best " + word[1])
time.sleep(time_s)
note("timed")
print("qcore-probe result " + json.dumps({"p50": dict.fromkeys(names, 1.0), "failed": {}, "cut": names[1:]}),
      flush=True)
"""


def test_the_probe_builds_its_blocks_side_by_side_and_times_them_one_after_another(monkeypatch, tmp_path):
    """The oracle is each child's own log of when it built and when it timed: with two cores the two blocks' builds
    overlap; no two timings do, and torch's block is timed first."""
    import sys

    log = tmp_path / "log.jsonl"
    monkeypatch.setattr(probe_measure.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(probe_measure, "memory_available", lambda: 1 << 40)  # whatever this machine has free
    monkeypatch.setattr(probe_measure._Children, "_command", lambda self, i: [
        sys.executable, "-c", FAKE_CHILD, ",".join(self.groups[i]), str(log),
        "1.5" if self.groups[i] == ["xnnpack"] else "0.6", "0.4"])  # fmt: skip  (xnnpack builds while pt2e starts)
    x = torch.randn(1, 3, 8, 8)
    said = []
    out = probe_measure.measure_apart(_tiny(), INT8, [x], x, "cpu", ["fx", "xnnpack", "pt2e"], 1.0, said.append,
                                      lambda: False)  # fmt: skip
    assert out == {"p50": {"fx": 1.0, "pt2e": 1.0, "xnnpack": 1.0}, "failed": {}, "cut": ["pt2e"], "runoff": []}
    events = {}
    for line in log.read_text().splitlines():
        who, what, at = json.loads(line)
        events[(who, what)] = at
    assert set(events) == {(w, e) for w in ("fx,pt2e", "xnnpack") for e in ("build", "built", "time", "timed")} | {
        ("fx,pt2e", "best 0.0"), ("xnnpack", "best 1.0")}  # the fastest an earlier block measured (none: 0)
    # built side by side: each started before the other finished
    assert events[("fx,pt2e", "build")] < events[("xnnpack", "built")]
    assert events[("xnnpack", "build")] < events[("fx,pt2e", "built")]
    # timed one after another, torch's threads first, and only once both were built
    assert max(events[("fx,pt2e", "built")], events[("xnnpack", "built")]) <= events[("fx,pt2e", "time")]
    assert events[("fx,pt2e", "timed")] <= events[("xnnpack", "time")]
    # then fx and xnnpack tie (different processes): a runoff, which this child (gone after its result) does not
    # answer, so the blocks' p50s stand (above)
    assert said[-3:] == [f"{auto_probe.PHASE}: timing fx, pt2e", f"{auto_probe.PHASE}: timing xnnpack",
                         f"{auto_probe.PHASE}: timing fx and xnnpack again, in turns"]  # fmt: skip
    assert sorted(m.rsplit(" ", 1)[1] for m in said if "timing" not in m) == ["1/3", "2/3", "3/3"]
    # the two children build at once, and the progress names both (whichever started first)
    assert f"{auto_probe.PHASE}: fx 1/3" in said or f"{auto_probe.PHASE}: xnnpack 1/3" in said
    assert any(m.endswith("side by side, 2/3") and "fx" in m and "xnnpack" in m for m in said), said
    assert any(m.endswith("side by side, 3/3") and "pt2e" in m and "xnnpack" in m for m in said), said


def test_with_one_core_the_probe_builds_one_block_at_a_time(monkeypatch, tmp_path):
    import sys

    log = tmp_path / "log.jsonl"
    monkeypatch.setattr(probe_measure.os, "cpu_count", lambda: 1)
    monkeypatch.setattr(probe_measure._Children, "_command", lambda self, i: [
        sys.executable, "-c", FAKE_CHILD, ",".join(self.groups[i]), str(log), "0.3", "0.1"])  # fmt: skip
    x = torch.randn(1, 3, 8, 8)
    out = probe_measure.measure_apart(_tiny(), INT8, [x], x, "cpu", ["fx", "xnnpack"], 1.0, lambda m: None,
                                      lambda: False)  # fmt: skip
    assert set(out["p50"]) == {"fx", "xnnpack"}
    events = {tuple(json.loads(line)[:2]): json.loads(line)[2] for line in log.read_text().splitlines()}
    assert events[("fx", "built")] <= events[("xnnpack", "build")]  # the second started after the first was built


def test_home_says_whether_auto_has_measured_this_machine(monkeypatch):
    from tests.apptest import open_linked

    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")
    lines = [c.value for c in open_linked().caption if c.value.startswith("auto")]
    assert len(lines) == 1 and "not measured on this machine yet" in lines[0]
    auto_policy.record_measurement("static", "resnet18", 1, 224, {"fx": 5.05, "pt2e": 2.32}, "test")
    lines = [c.value for c in open_linked().caption if c.value.startswith("auto")]
    assert lines == [f"auto: measured on this machine for resnet18 batch 1 (pt2e fastest), {time.strftime('%Y-%m-%d')}"]


def test_the_probe_builds_side_by_side_only_as_many_as_cores_and_memory_hold(monkeypatch):
    need = probe_measure.CHILD_BASE_BYTES + probe_measure.CHILD_MODEL_FACTOR * 100_000_000  # a 100 MB model
    monkeypatch.setattr(probe_measure.os, "cpu_count", lambda: 4)
    for free, blocks, want in [(10 * need, 2, 2), (10 * need, 6, 4), (3 * need + 1, 4, 3), (need - 1, 2, 1),
                               (None, 2, 1)]:  # fmt: skip
        monkeypatch.setattr(probe_measure, "memory_available", lambda free=free: free)
        assert probe_measure.parallel_builds(blocks, 100_000_000) == want, (free, blocks)
    monkeypatch.setattr(probe_measure.os, "cpu_count", lambda: None)
    monkeypatch.setattr(probe_measure, "memory_available", lambda: 10 * need)
    assert probe_measure.parallel_builds(2, 100_000_000) == 1


def test_the_memory_available_is_what_psutil_reads():
    psutil = pytest.importorskip("psutil")
    mine, theirs = probe_measure.memory_available(), psutil.virtual_memory().available
    assert mine is not None and abs(mine - theirs) <= 0.1 * theirs


def test_the_estimate_of_a_probe_counts_its_blocks_built_side_by_side(monkeypatch):
    """The oracle: the build figures ``estimate.build_seconds`` gives each compiled backend, combined by hand."""
    pt2e, xnn = (estimate.build_seconds(estimate.COMPILED_BACKENDS[n])[0] for n in ("pt2e", "xnnpack"))
    names, s = ["fx", "pt2e", "xnnpack"], auto_probe.PROBE_SECONDS
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # fx and pt2e in one block, xnnpack in its own: side by side
    assert estimate.probe_seconds(names) == pytest.approx(3 * s + max(pt2e, xnn))
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert estimate.probe_seconds(names) == pytest.approx(3 * s + pt2e + xnn)
    assert estimate.probe_seconds(["fx", "torchao"]) == pytest.approx(2 * s)  # nothing compiled, one block


class _Sleeper:
    """A built backend that sleeps ``ms`` per call and counts its calls."""

    def __init__(self, ms: float):
        self.ms, self.calls = ms, 0

    def __call__(self, x):
        self.calls += 1
        time.sleep(self.ms / 1000)


def test_a_clearly_slower_backend_is_timed_no_further_after_its_first_second(monkeypatch):
    """The oracle is how often each was called: a 10 ms backend beside a 1 ms one stops being called after
    CUT_AFTER_S of timing each, the 1 ms one runs its whole budget; an earlier block's p50 cuts one timed alone;
    two alike are both timed to the end."""
    monkeypatch.setattr(probe_measure, "CUT_AFTER_S", 0.2)
    x = torch.zeros(1)
    fast, slow = _Sleeper(1), _Sleeper(10)
    p50, cut = probe_measure._time({"fast": fast, "slow": slow}, x, "cpu", 1.0)
    assert cut == ["slow"] and p50["slow"] >= 10.0 and p50["fast"] * probe_measure.CUT_RATIO < p50["slow"]
    # the first 0.4 s (0.2 s each) and its warm-up hold at most ~45 of the slow one's calls; the fast one goes on
    assert slow.calls < 60 and fast.calls > 2 * slow.calls
    alone = _Sleeper(10)
    p50, cut = probe_measure._time({"alone": alone}, x, "cpu", 1.0, best_ms=1.0)
    assert cut == ["alone"] and alone.calls < 40  # about 0.2 s of its 1 s
    a, b = _Sleeper(2), _Sleeper(2)
    p50, cut = probe_measure._time({"a": a, "b": b}, x, "cpu", 0.6)
    assert cut == [] and a.calls == b.calls and a.calls > 50  # both timed to the end: 1.2 s of 4 ms rounds


def test_pt2e_openvino_is_a_candidate_of_static_int8_where_openvino_is_installed():
    """It runs the pt2e backend's graph (the same ranges and codes), so auto may pick it for speed alone."""
    pytest.importorskip("openvino")
    assert auto_probe.candidates(INT8, "cpu")[-1] == "pt2e-openvino"
    assert "pt2e-openvino" not in auto_probe.candidates(QuantSpec("int8", granularity="per-tensor"), "cpu")
    assert probe_measure.blocks(["fx", "pt2e", "xnnpack", "pt2e-openvino"], probe_measure.backend_table()) == [
        ["fx", "pt2e"], ["xnnpack"], ["pt2e-openvino"]]  # its own thread pool: a block of its own


# A child that times NAMES at P50 ms in its block, then answers each runoff line with [AGAIN] ms, logging the turns
RUNOFF_CHILD = """
import json, sys, time
names, p50, again, log = sys.argv[1].split(","), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print("qcore-probe built", flush=True)
if sys.stdin.readline().split()[:1] != ["time"]:
    sys.exit(0)
print("qcore-probe result " + json.dumps({"p50": dict.fromkeys(names, p50), "failed": {}, "cut": []}), flush=True)
for line in sys.stdin:
    word = line.split()
    if word[:1] != ["again"]:
        break
    with open(log, "a") as f:
        f.write(json.dumps([word[1], float(word[2]), time.monotonic()]) + "\\n")
    time.sleep(0.01)
    print("qcore-probe again " + json.dumps([again]), flush=True)
"""


@pytest.mark.parametrize("second_p50, runoff", [(1.1, True), (1.3, False)])
def test_the_fastest_and_the_fastest_of_another_process_are_timed_again_in_turns(monkeypatch, tmp_path, second_p50,
                                                                                runoff):
    """Blocks timed one after another can swap places when the machine's speed changes between them: the fastest
    (fx; pt2e ties it in the same process) and the fastest of another process (xnnpack), within the cut ratio, are
    timed again, alternating, and ranked on those calls. The oracle is the children's own log of their turns."""
    import sys

    log = tmp_path / "turns.jsonl"
    p50 = {"fx,pt2e": ("1.0", "2.0"), "xnnpack": (str(second_p50), "1.5")}  # block p50, then the runoff's
    monkeypatch.setattr(probe_measure._Children, "_command", lambda self, i: [
        sys.executable, "-c", RUNOFF_CHILD, ",".join(self.groups[i]), *p50[",".join(self.groups[i])], str(log)])
    x = torch.randn(1, 3, 8, 8)
    said = []
    out = probe_measure.measure_apart(_tiny(), INT8, [x], x, "cpu", ["fx", "xnnpack", "pt2e"], 1.0, said.append,
                                      lambda: False)  # fmt: skip
    if not runoff:  # 1.3x the fastest: past the cut ratio, no runoff
        assert out["p50"] == {"fx": 1.0, "pt2e": 1.0, "xnnpack": 1.3} and out["runoff"] == [] and not log.exists()
        return
    turns = [json.loads(line) for line in log.read_text().splitlines()]
    assert [t[0] for t in turns] == ["fx", "xnnpack", "xnnpack", "fx"] * (probe_measure.RUNOFF_TURNS // 2)
    assert all(t[1] == probe_measure.RUNOFF_SLICE_S for t in turns)
    assert out["p50"] == {"fx": 2.0, "pt2e": 1.0, "xnnpack": 1.5} and out["runoff"] == ["fx", "xnnpack"]
    assert f"{auto_probe.PHASE}: timing fx and xnnpack again, in turns" in said
