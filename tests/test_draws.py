"""qcore.metrics.draws: the mean and spread of calibration draws, the overlap rule, and a sweep that draws."""

import csv
import json
import sqlite3

import pytest

from qcore.data import split_calib_eval
from qcore.guards.limits import LimitError
from qcore.metrics.draws import apply_draws, indistinguishable, overlaps, reads_calibration_images, summarize_draws
from qcore.metrics.measure import Accuracy
from qcore.metrics.result import COLUMNS, Result
from qcore.present.report import csv_text
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig, prepare, run_sweep

INT8 = QuantSpec("int8", granularity="per-tensor")
INT4 = QuantSpec("int4", mode="weight-only", granularity="per-group", calibration="minmax")


def _row(top1, lo=None, hi=None, draws=1, run_id="r"):
    r = Result(spec=INT8, model="m", dataset="d", run_id=run_id)
    r.top1, r.top1_min, r.top1_max, r.calib_draws = top1, lo, hi, draws
    return r


def test_the_mean_and_spread_of_draws():
    accs = [Accuracy(top1=t, top5=99.0, agreement=a, top1_delta=t - 92.0) for t, a in ((91.2, 98), (91.6, 99),
                                                                                       (91.0, 97))]
    r = _row(None)
    apply_draws(r, accs, [7, 8, 9, 10])
    assert r.top1 == pytest.approx(91.2667, abs=1e-4) and r.top1_delta == pytest.approx(-0.7333, abs=1e-4)
    assert r.agreement == pytest.approx(98.0) and r.top1_std == pytest.approx(0.3055, abs=1e-4)
    assert (r.top1_min, r.top1_max, r.calib_draws, r.calib_seeds) == (91.0, 91.6, 3, [7, 8, 9])
    assert r.draws_top1 == [91.2, 91.6, 91.0]
    one, spread = summarize_draws(accs[:1])
    assert one.top1 == 91.2 and spread["top1_std"] is None and spread["top1_min"] is None
    with pytest.raises(ValueError, match="at least one draw"):
        summarize_draws([])


def test_only_static_integer_specs_read_calibration_images():
    assert reads_calibration_images(INT8)
    assert not reads_calibration_images(INT4) and not reads_calibration_images(FP32)
    assert not reads_calibration_images(QuantSpec("int8", mode="dynamic", granularity="per-tensor"))


def test_overlapping_ranges_are_not_distinguishable():
    front = _row(91.0, 90.5, 91.4, 5, "front")
    near = _row(90.2, 89.8, 90.6, 5, "near")  # its max 90.6 reaches the frontier point's min 90.5
    far = _row(89.0, 88.7, 89.3, 5, "far")
    single = _row(90.55, run_id="single")  # one draw: the value, no range
    assert overlaps(near, front) and overlaps(front, near) and not overlaps(far, front)
    assert overlaps(near, single) and not overlaps(far, single)
    got = indistinguishable([front, near, far, single], [front, single])
    assert {k: [f.run_id for f in v] for k, v in got.items()} == {"near": ["front", "single"], "front": ["single"]}


def test_config_limits_name_the_value():
    with pytest.raises(LimitError, match="calib_draws"):
        SweepConfig(calib_draws=0)
    with pytest.raises(ValueError, match="calib_draws=3 is not allowed with calib_list"):
        SweepConfig(calib_draws=3, calib_list="list.txt")
    assert SweepConfig.from_dict(SweepConfig(calib_draws=4).to_dict()).calib_draws == 4


def test_rows_stored_before_draws_existed_still_open(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    old = _row(90.0)
    store.add_result(old)
    body = json.loads(old.to_json())
    for name in ("calib_draws", "top1_std", "top1_min", "top1_max", "calib_seeds", "draws_top1"):
        del body[name]
    with sqlite3.connect(store.path) as c:
        c.execute("UPDATE results SET body=? WHERE run_id=?", (json.dumps(body), old.run_id))
    (back,) = store.results()
    assert back.top1 == 90.0 and back.calib_draws == 1 and back.top1_std is None and back.calib_seeds == []


def test_a_sweep_with_draws(fashion_mnist, resnet18_checkpoint):
    config = SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), calib_size=16, eval_limit=48,
                         latency_budget_s=0.1, calib_draws=3, seed=4, fp32_compiled=False)
    base, int8, int4 = run_sweep(config, [FP32, INT8, INT4])
    assert int8.ok and int8.calib_draws == 3 and int8.calib_seeds == [4, 5, 6] and len(int8.draws_top1) == 3
    assert int8.top1 == pytest.approx(sum(int8.draws_top1) / 3)
    assert int8.top1_min == min(int8.draws_top1) <= int8.top1 <= int8.top1_max == max(int8.draws_top1)
    assert int8.top1_std is not None and int8.top1_std >= 0
    assert int8.top1_delta == pytest.approx(int8.top1 - base.top1)
    # one estimate, every number: the mean counts per draw give the mean change, the interval holds every draw
    assert int8.top1_delta == pytest.approx(100.0 * (int8.images_gained - int8.images_lost) / int8.eval_images)
    assert len(int8.draws_lost) == len(int8.draws_gained) == 3 and int8.images_lost == pytest.approx(
        sum(int8.draws_lost) / 3)  # fmt: skip
    deltas = [t - base.top1 for t in int8.draws_top1]
    assert int8.top1_delta_lo <= min(deltas) and max(deltas) <= int8.top1_delta_hi
    assert int8.top1_lo <= int8.top1_min and int8.top1_max <= int8.top1_hi
    assert int4.top1_delta == 100.0 * (int4.images_gained - int4.images_lost) / int4.eval_images  # one draw: exact
    assert any(n.startswith("top-1 is the mean of 3 calibration draws (seeds 4 to 6)") for n in int8.notes)
    # weight-only ranges come from the weights: measured once, and said so
    assert int4.ok and int4.calib_draws == 1 and int4.top1_std is None
    assert any("measured once, not 3 times" in n for n in int4.notes)
    draws = int8.manifest["calib_draws"]
    assert [d["seed"] for d in draws] == [4, 5, 6] and all(len(d["indices"]) == 16 for d in draws)
    assert len({i for d in draws for i in d["indices"]}) == 48  # disjoint
    assert draws[0]["indices"] == split_calib_eval(_fashion(), 16, 48, 4)[0].indices
    assert int8.manifest["calib_size"] == 16
    rows = list(csv.DictReader(csv_text([base, int8, int4]).splitlines()))
    assert list(rows[0]) == list(COLUMNS) and rows[1]["calib_draws"] == "3" and rows[1]["calib_seeds"] == "4;5;6"
    assert float(rows[1]["top1_max"]) == int8.top1_max
    drawn = [float(t) for t in rows[1]["draws_top1"].split(";")]  # each draw's measured top-1 (issue 29)
    assert drawn == pytest.approx(int8.draws_top1, abs=1e-6) and sum(drawn) / 3 == pytest.approx(float(rows[1]["top1"]))


def _fashion():
    from qcore.data import load_dataset

    return load_dataset("fashion-mnist")


def test_a_calibration_list_is_recorded(tmp_path, fashion_mnist, resnet18_checkpoint):
    f = tmp_path / "calib.txt"
    f.write_text("5\n1\n59999\n")
    p = prepare(SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), eval_limit=8, calib_list=str(f)))
    assert p.manifest["calib_draws"] == [{"seed": None, "indices": [1, 5, 59999]}]
    assert p.manifest["calib_list"]["path"] == str(f) and p.manifest["calib_list"]["images"] == 3
    assert p.manifest["calib_size"] == 3 and sum(len(b) for b in p.calib) == 3
    f.write_text("60000\n")
    with pytest.raises(ValueError, match="index 60000 is not in the training split; allowed: 0 to 59999"):
        prepare(SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), eval_limit=8, calib_list=str(f)))
    with pytest.raises(ValueError, match="enough for at most 1 draw"):
        prepare(SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), eval_limit=8, calib_size=40_000,
                            calib_draws=2))


def test_the_pareto_chart_draws_bars_and_says_what_it_cannot_tell_apart():
    from qcore.present.report import pareto_figure

    def point(top1, lat, lo=None, hi=None, draws=1, run_id="r", spec=INT8):
        r = _row(top1, lo, hi, draws, run_id)
        r.spec, r.latency_ms_p50, r.size_bytes, r.size_ratio, r.speedup = spec, lat, 100, 0.25, 2.0
        r.top1_delta, r.agreement, r.top1_std = 0.0, 99.0, 0.2 if draws > 1 else None
        return r

    front = point(91.0, 1.0, 90.5, 91.4, 5, "front")
    near = point(90.2, 2.0, 89.8, 90.6, 5, "near", QuantSpec("int8"))  # slower, and within front's range
    far = point(92.0, 3.0, run_id="far", spec=QuantSpec("int8", calibration="entropy"))  # one draw, on the frontier
    fig = pareto_figure([front, near, far])
    frontier = next(t for t in fig.data if t.name == "frontier")
    assert list(frontier.y) == [91.0, 92.0]  # computed on the means: near is not on it
    bars = next(t for t in fig.data if t.name.startswith("calibration draws: min-max of top-1 (5 draws)"))
    assert list(bars.y) == [91.0, 90.2] and list(bars.error_y.array) == pytest.approx([0.4, 0.4])
    assert list(bars.error_y.arrayminus) == pytest.approx([0.5, 0.4])
    hover = {cd[0]: t for tr in fig.data if tr.text is not None for cd, t in zip(tr.customdata, tr.text)}
    assert f"not distinguishable from {front.label} with 5 draws" in hover["near"]
    assert "mean of 5 calibration draws: std 0.20, range 89.80 to 90.60%" in hover["near"]
    assert "not distinguishable" not in hover["front"] and "calibration draws" not in hover["far"]
    assert not any(t.name.startswith("calibration draws") for t in pareto_figure([far]).data)
