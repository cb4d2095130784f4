"""The Sweep page's decision: the budgets in the URL shade the Pareto chart, ring the points that meet both and a
line names the point to ship, or says none does and which budget is the closest; a link's bad value is named, never
a traceback. Rows are inserted (nothing is measured)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from tests.apptest import APP

INT8 = QuantSpec("int8", granularity="per-channel", mode="static")
INT4 = QuantSpec("int4", granularity="per-group", mode="weight-only", calibration="mse")


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _row(spec: QuantSpec, jid: str, t: float, *, delta: float, lo: float, ms: float, mb: float, **kw) -> Result:
    return Result(spec, "resnet18", "fashion-mnist", backend="fx", kernel="x86", top1=91.0 + delta, top1_delta=delta,
                  top1_delta_lo=lo, top1_delta_hi=delta + (delta - lo), agreement=95.0, latency_ms_p50=ms,
                  latency_ms_p90=ms, fp32_latency_ms_p50=10.0, speedup=10.0 / ms, size_bytes=int(mb * 1e6),
                  size_ratio=mb / 44, sweep_id=jid, created_at=t, baseline_run_id="fp32run", **kw)


def _sweep() -> str:
    store = Store()
    jid = store.submit_job(SweepConfig(model="resnet18").to_dict(), [INT8.to_dict(), INT4.to_dict()])
    rows = [
        _row(FP32, jid, 1.0, delta=0.0, lo=0.0, ms=10.0, mb=44.0, run_id="fp32run"),
        _row(INT8, jid, 2.0, delta=-0.4, lo=-0.8, ms=4.0, mb=11.0),
        _row(INT4, jid, 3.0, delta=-1.5, lo=-2.5, ms=3.0, mb=6.0),
        Result(INT8.replace(backend="ort"), "resnet18", "fashion-mnist", status="error", error="boom", sweep_id=jid,
               created_at=4.0),
    ]
    for r in rows:
        store.add_result(r)
    store.update_job(jid, state="done", done=3)
    return jid


def _open(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/sweep.py")
    at.query_params.update({"job": _sweep(), **query})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _ship(at: AppTest) -> list[str]:
    return [s.value for s in at.success if s.value.startswith("Ship")]


def _pareto(at: AppTest) -> dict:
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(f for f in figs if any(t.get("customdata") for t in f["data"]))


def test_budgets_in_the_url_name_the_point_to_ship_and_shade_the_chart():
    at = _open(sla_ms="5", max_drop="1")
    (line,) = _ship(at)
    assert line.startswith("Ship INT8 per-channel") and "p50 4.00 ms" in line and "95% interval -0.80" in line
    assert "11.00 MB" in line
    (said,) = [c.value for c in at.caption if "left out, never chosen" in c.value]
    assert "1 row left out, never chosen: 1 not measured" in said and "Shaded: x at most 5.00 ms" in said
    fig = _pareto(at)
    names = [t.get("name") for t in fig["data"]]
    assert "meets both budgets" in names and "point to ship" in names
    (shape,) = fig["layout"]["shapes"]
    assert shape["x1"] == 5.0 and shape["y0"] == pytest.approx(90.0)  # FP32's 91 % less 1 point
    assert at.number_input(key="sla_ms").value == 5.0 and at.number_input(key="max_drop").value == 1.0


def test_no_point_meets_both_and_the_line_names_the_closest_budget():
    at = _open(sla_ms="3.5", max_drop="1", ship="fastest")
    assert not _ship(at)
    (line,) = [w.value for w in at.warning]
    assert "No point meets both budgets" in line and "closest to being met is the latency budget" in line
    assert "INT8 per-channel" in line and "0.50 ms over" in line


@pytest.mark.parametrize("query", [{"sla_speedup": "3"}, {"sla": "speed-up", "sla_speedup": "3"}])
def test_a_speedup_budget_from_the_url_opens_on_it(query):
    at = _open(**query, max_drop="3")
    assert at.selectbox(key="sla").value == "speed-up" and at.number_input(key="sla_speedup").value == 3.0
    (line,) = _ship(at)
    assert "INT4 per-group" in line  # 3.33x, drops up to 2.5 points: within both, the smallest


@pytest.mark.parametrize("query, said", [
    ({"sla_ms": "abc"}, "The link's sla_ms='abc' was left out"),
    ({"max_drop": "-2"}, "The link's max_drop='-2' was left out"),
    ({"max_drop": "1", "ship": "cheapest"}, "The link's ship='cheapest' was left out; allowed: smallest, fastest"),
    ({"max_drop": "1", "sla": "speedup"}, "The link's sla='speedup' was left out; allowed: ms, speed-up"),
    ({"sla_ms": "5", "sla_speedup": "2"}, "both sla_ms and sla_speedup"),
])  # fmt: skip
def test_a_bad_link_value_is_named_and_left_out(query, said):
    at = _open(**query)
    warnings = [w.value for w in at.warning]
    assert any(said in w for w in warnings), warnings


def test_a_budget_that_cannot_be_is_an_error_not_a_traceback():
    at = _open(sla_ms="0")
    errors = [e.value for e in at.error]
    assert any("sla_ms=0.0 is not allowed" in e and "above 0" in e for e in errors), errors


def test_a_link_value_with_markdown_is_shown_as_text():
    from tests.test_app_escape import PAYLOAD, _foreign, _texts

    at = _open(**{key: PAYLOAD for key in ("sla", "sla_ms", "sla_speedup", "max_drop", "ship")})
    assert not _foreign(at), _foreign(at)
    assert [t for t in _texts(at.main) if "attacker" in t and "was left out" in t]


def test_the_link_message_stays_until_the_input_is_changed():
    at = _open(sla_ms="abc", max_drop="1")
    at.run()  # a rerun (a poll, another widget): the link's value is gone from the URL, the message is not
    assert any("sla_ms='abc' was left out" in w.value for w in at.warning)
    at.number_input(key="sla_ms").set_value(5.0).run()
    assert not at.exception and not any("was left out" in w.value for w in at.warning)
    assert _ship(at)[0].startswith("Ship INT8 per-channel")
