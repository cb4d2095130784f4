"""``sweep`` and ``runs`` with a budget (--sla-ms, --sla-speedup, --max-drop, --ship): the point to ship printed,
exit status 0 when one meets the budget and 3 when none does, 2 for a budget that cannot be. The sweep itself is
stubbed (its rows made here): nothing is measured."""

from __future__ import annotations

import pytest

from qcore.cli import main
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store

INT8 = QuantSpec("int8", granularity="per-channel", mode="static")


def _rows(sweep_id: str = "") -> list[Result]:
    common = dict(model="resnet18", dataset="fashion-mnist", sweep_id=sweep_id, baseline_run_id="fp32run",
                  fp32_latency_ms_p50=10.0, agreement=95.0)
    return [
        Result(FP32, top1=91.0, top1_delta=0.0, top1_delta_lo=0.0, top1_delta_hi=0.0, latency_ms_p50=10.0,
               speedup=1.0, size_bytes=44_000_000, size_ratio=1.0, run_id="fp32run", created_at=1.0, **common),
        Result(INT8, top1=90.6, top1_delta=-0.4, top1_delta_lo=-0.8, top1_delta_hi=0.0, latency_ms_p50=4.0,
               speedup=2.5, size_bytes=11_000_000, size_ratio=0.25, created_at=2.0, **common),
        Result(INT8.replace(calibration="mse"), status="error", error="boom", created_at=3.0, **common),
    ]  # fmt: skip


@pytest.fixture
def stub_sweep(monkeypatch):
    """``run_sweep`` returns the rows above at once (the --no-store path)."""
    asked = []

    def run_sweep(config, specs, progress=None):
        asked.append(specs)
        return _rows()

    monkeypatch.setattr("qcore.runs.sweep.run_sweep", run_sweep)
    return asked


SWEEP = ["sweep", "--model", "resnet18", "--precision", "fp32,int8", "--mode", "static", "--granularity",
         "per-channel", "--calibration", "minmax", "--no-store"]  # fmt: skip


def test_a_sweep_that_meets_the_budget_prints_the_point_to_ship_and_exits_0(stub_sweep, capsys):
    assert main([*SWEEP, "--sla-ms", "5", "--max-drop", "1"]) == 1  # the error row: the sweep's own status
    out = capsys.readouterr()
    assert "budget: p50 at most 5 ms and a drop of at most 1 point" in out.out
    assert "Ship INT8 per-channel min-max asym static (p50 4.00 ms" in out.out
    assert "1 row left out, never chosen: 1 not measured" in out.err


def test_exit_0_and_3(stub_sweep, monkeypatch, capsys):
    monkeypatch.setattr("qcore.runs.sweep.run_sweep", lambda config, specs, progress=None: _rows()[:2])
    assert main([*SWEEP, "--sla-speedup", "2", "--max-drop", "1", "--ship", "fastest"]) == 0
    assert "Ship INT8" in capsys.readouterr().out
    assert main([*SWEEP, "--sla-ms", "3", "--max-drop", "1"]) == 3
    out = capsys.readouterr().out
    assert "No point meets both budgets" in out and "1.00 ms over the latency budget of 3 ms" in out
    assert main([*SWEEP, "--max-drop", "0.5"]) == 0  # FP32 itself meets an accuracy budget alone
    assert "Ship FP32" in capsys.readouterr().out
    assert main(SWEEP) == 0  # no budget: the sweep's own status, nothing said
    assert "budget" not in capsys.readouterr().out


@pytest.mark.parametrize("args, said", [
    (["--sla-ms", "-1"], "argument --sla-ms: sla_ms='-1' is not allowed"),
    (["--sla-ms", "fast"], "argument --sla-ms: sla_ms='fast' is not a number"),
    (["--max-drop", "250"], "argument --max-drop: max_drop='250' is not allowed"),
    (["--sla-speedup", "0"], "allowed: above 0, at most 1,000×"),
    (["--sla-ms", "5", "--sla-speedup", "2"], "argument --sla-speedup: not allowed with argument --sla-ms"),
    (["--ship", "fastest"], "argument --ship: it chooses among the points that meet a budget"),
    (["--ship", "cheapest", "--max-drop", "1"], "argument --ship: invalid choice: 'cheapest'"),
])  # fmt: skip
def test_a_budget_that_cannot_be_exits_2_before_anything_runs(stub_sweep, capsys, args, said):
    with pytest.raises(SystemExit) as exc:
        main([*SWEEP, *args])
    assert exc.value.code == 2 and said in capsys.readouterr().err
    assert not stub_sweep  # nothing was measured


def test_runs_judges_stored_rows_and_writes_the_decision_in_the_report(tmp_path, capsys):
    store = Store()
    jid = store.submit_job({"model": "resnet18"}, [INT8.to_dict()])
    for r in _rows(jid):
        store.add_result(r)
    page = tmp_path / "r.html"
    assert main(["runs", "--sweep", jid, "--sla-ms", "5", "--max-drop", "1", "--html", str(page)]) == 0
    assert "Ship INT8 per-channel" in capsys.readouterr().out
    text = page.read_text()
    assert "The decision" in text and "Ship INT8 per-channel" in text and "meets both budgets" in text
    assert main(["runs", "--sweep", jid, "--sla-ms", "1"]) == 3
    assert "No point meets the budget (p50 at most 1 ms)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["runs", "--jobs", "--max-drop", "1"])
    assert exc.value.code == 2 and "argument --jobs" in capsys.readouterr().err


def test_a_stored_sweep_judges_its_rows_too(monkeypatch, capsys):
    def execute_job(store, job, progress=None, cluster=None):
        rows = _rows(job.job_id)[:2]
        for r in rows:
            store.add_result(r)
        return rows

    monkeypatch.setattr("qcore.service.worker.execute_job", execute_job)
    assert main([a for a in SWEEP if a != "--no-store"] + ["--sla-ms", "2"]) == 3
    out = capsys.readouterr()
    assert "No point meets the budget (p50 at most 2 ms)" in out.out and "stored as sweep" in out.err
