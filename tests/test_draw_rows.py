"""A row with calibration draws says one thing: its change, its images lost and gained, both intervals, the
significance sentence, the table, the hover and the exports all describe the draws' mean.

The case of the issue: FP32 right on 1769 of 2000 images (88.45%); three draws at +14, -8 and -3 images (89.15, 88.05,
88.30%: both sides of FP32), mean +1 image (+0.05 points). Draw 0 alone is "significant" (its paired interval
[+0.27, +1.15] excludes 0); the draws together are not.

The oracle for the combined interval is Rubin's rules computed here by hand (Rubin 1987, *Multiple Imputation for
Nonresponse in Surveys*, eqs. 3.1.2-3.1.6: Q = mean of the K estimates, W = mean within variance, B = between
variance, T = W + (1 + 1/K) B, nu = (K - 1) (1 + W / ((1 + 1/K) B))^2, interval Q +- t_{nu, 0.975} sqrt(T)), each
draw's within variance read off its own 95% interval as ((hi - lo) / 3.92)^2; the t quantile is scipy's.
"""

from __future__ import annotations

import csv
import json
import math
import random
import sqlite3
import statistics

import pytest

from qcore.metrics.draws import apply_draws
from qcore.metrics.measure import Accuracy
from qcore.metrics.result import Result
from qcore.metrics.scale import draw0_label, images_text, set_accuracy_scale
from qcore.metrics.stats import Z95, combine_draws, paired_delta, wilson
from qcore.present.explain import explain
from qcore.quant.spec import QuantSpec

N, FP32_RIGHT = 2000, 1769
DRAWS = [(2, 16), (14, 6), (9, 6)]  # (lost, gained) per draw


def _counts(lost: int, gained: int) -> dict[str, int]:
    both = FP32_RIGHT - lost
    return {"both": both, "lost": lost, "gained": gained, "neither": N - both - lost - gained}


def _acc(lost: int, gained: int) -> Accuracy:
    right = FP32_RIGHT - lost + gained
    return Accuracy(top1=100.0 * right / N, top5=99.0, agreement=98.0, top1_delta=100.0 * (gained - lost) / N, n=N,
                    counts=_counts(lost, gained))


def _row(**kw) -> Result:
    r = Result(QuantSpec("int8", granularity="per-tensor"), "resnet18", "fashion-mnist", kernel="native",
               latency_ms_p50=5.0, fp32_latency_ms_p50=10.0, speedup=2.0, size_bytes=11_000_000, size_ratio=0.25)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def _drawn() -> Result:
    r = _row()
    apply_draws(r, [_acc(*d) for d in DRAWS], [0, 1, 2])
    return r


def _rubin(estimates, intervals):
    """Rubin's rules by hand (see the module), for the oracle."""
    t = pytest.importorskip("scipy.stats").t
    k = len(estimates)
    q = sum(estimates) / k
    w = sum(((hi - lo) / (2 * 1.959963984540054)) ** 2 for lo, hi in intervals) / k
    b = sum((e - q) ** 2 for e in estimates) / (k - 1)
    total = w + (1 + 1 / k) * b
    nu = (k - 1) * (1 + w / ((1 + 1 / k) * b)) ** 2
    half = t.ppf(0.975, nu) * math.sqrt(total)
    return q - half, q + half


def test_the_row_change_is_the_mean_and_its_images_are_the_mean_counts():
    r = _drawn()
    assert r.top1_delta == pytest.approx(0.05, abs=1e-12)  # (14 - 8 - 3) / 3 = 1 image of 2000
    assert (r.images_lost, r.images_gained) == (pytest.approx(25 / 3), pytest.approx(28 / 3))
    assert r.top1_delta == pytest.approx(100.0 * (r.images_gained - r.images_lost) / r.eval_images, abs=1e-12)
    assert (r.draws_lost, r.draws_gained, r.eval_images) == ([2, 14, 9], [16, 6, 6], N)
    assert images_text(r) == "+1.0 of 2000 images, mean of 3 draws (lost 8.3, gained 9.3)"


def test_the_interval_of_the_change_is_rubins_combination_and_holds_every_draw():
    r = _drawn()
    deltas = [100.0 * (g - lost) / N for lost, g in DRAWS]
    newcombe = [tuple(100.0 * v for v in paired_delta(**_counts(*d))[1:]) for d in DRAWS]
    assert newcombe[0][0] > 0  # draw 0 alone: "more than chance"
    lo, hi = _rubin(deltas, newcombe)
    assert (r.top1_delta_lo, r.top1_delta_hi) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
    assert r.top1_delta_lo < min(deltas) < 0 < max(deltas) < r.top1_delta_hi
    # top-1's interval: the draws' Wilson intervals combined the same way, around the mean top-1
    tops = [100.0 * (FP32_RIGHT - lost + g) / N for lost, g in DRAWS]
    wil = [tuple(100.0 * v for v in wilson(FP32_RIGHT - lost + g, N)) for lost, g in DRAWS]
    lo, hi = _rubin(tops, wil)
    assert (r.top1_lo, r.top1_hi) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
    assert r.top1_lo < min(tops) and max(tops) < r.top1_hi and r.top1 == pytest.approx(statistics.fmean(tops))


def test_rubins_rules_by_hand_with_a_published_t_quantile():
    # within variances 0: nu = K - 1 = 2, t_{2, 0.975} = 4.303 (any t table); B = 1, T = (1 + 1/3) * 1
    q, lo, hi = combine_draws([1.0, 2.0, 3.0], [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)])
    assert q == 2.0 and (lo, hi) == (pytest.approx(2 - 4.303 * math.sqrt(4 / 3), abs=1e-3),
                                     pytest.approx(2 + 4.303 * math.sqrt(4 / 3), abs=1e-3))
    # W = (1 + 1/K) B: nu = (K - 1) * 2^2 = 8, t_{8, 0.975} = 2.306; B = 0.0225, T = 2 * 0.03
    half = Z95 * math.sqrt(0.03)
    q, lo, hi = combine_draws([-0.10, 0.20, 0.05], [(e - half, e + half) for e in (-0.10, 0.20, 0.05)])
    assert q == pytest.approx(0.05) and hi - q == pytest.approx(2.306 * math.sqrt(0.06), abs=1e-3)
    assert q - lo == pytest.approx(hi - q)
    assert combine_draws([0.0, 0.0], [(0.0, 0.0), (0.0, 0.0)]) == (0.0, 0.0, 0.0)  # the same model every draw
    with pytest.raises(ValueError, match="one interval per estimate"):
        combine_draws([1.0, 2.0], [(0.0, 1.0)])


def test_every_draw_falls_inside_the_combined_interval_whatever_k():
    rng = random.Random(0)
    for _ in range(200):
        k = rng.choice([2, 3, 5, 10, 30, 100])
        draws = [(rng.randint(0, 40), rng.randint(0, 40)) for _ in range(k)]
        r = _row()
        apply_draws(r, [_acc(*d) for d in draws], list(range(k)))
        deltas = [100.0 * (g - lost) / N for lost, g in draws]
        assert r.top1_delta_lo <= min(deltas) and max(deltas) <= r.top1_delta_hi
        if min(deltas) < 0 < max(deltas):
            assert r.top1_delta_lo < 0 < r.top1_delta_hi and "more than chance" not in explain(r)


def test_the_significance_sentence_reads_the_draws():
    text = explain(_drawn())
    assert "Top-1 accuracy rose by 0.05 points (88.45% to 88.50%) on average over 3 calibration draws" in text
    assert "more than chance" not in text
    assert ("(+1.0 of 2000 images, mean of 3 draws (lost 8.3, gained 9.3); the 95% interval of the mean change, over "
            "the images and the draws, is [") in text
    assert ("within what chance alone moves it: its 3 draws changed it by -0.40 to +0.70 points, on both sides of "
            "FP32)") in text
    # all three draws above FP32, far from chance: said so
    r = _row()
    apply_draws(r, [_acc(1, 40), _acc(2, 42), _acc(0, 39)], [0, 1, 2])
    assert "more than chance alone would move it: its 3 draws changed it by +1.95 to +2.00 points)" in explain(r)


def _legacy() -> Result:
    """A draw row stored before the counts and intervals described the mean: they are draw 0's."""
    r = _row(top1=88.5, top1_delta=0.05, calib_draws=3, draws_top1=[89.15, 88.05, 88.30], calib_seeds=[0, 1, 2],
             top1_std=0.57, top1_min=88.05, top1_max=89.15)
    set_accuracy_scale(r, _counts(*DRAWS[0]))
    return r


def test_a_draw_row_stored_before_says_its_numbers_are_draw_0s_and_is_not_called_significant():
    r = _legacy()
    assert r.top1_delta_lo > 0 and draw0_label(r) == " in draw 0 of 3"
    assert images_text(r) == "+14 of 2000 images in draw 0 of 3 (lost 2, gained 16)"
    text = explain(r)
    assert "more than chance" not in text
    assert ("the 95% interval of the change in draw 0 of 3 is [+0.27, +1.15] points, within what chance alone moves "
            "it: its 3 draws changed it by -0.40 to +0.70 points, on both sides of FP32") in text
    assert draw0_label(_drawn()) == "" and draw0_label(_row(top1=90.0)) == ""


def test_the_table_and_the_hover_show_the_same_estimate():
    from qcore.present.chart_scale import scale_lines
    from ui.results import scale_columns

    cols = scale_columns(_drawn())
    assert cols["Δ images"] == "+1.0 of 2000 images, mean of 3 draws"
    lo, hi = _drawn().top1_delta_lo, _drawn().top1_delta_hi
    assert cols["Δ 95% CI pts"] == f"[{lo:+.2f}, {hi:+.2f}]"
    hover = " ".join(scale_lines(_drawn()))
    assert "change +1.0 of 2000 images, mean of 3 draws (lost 8.3, gained 9.3), 95% interval" in hover
    old = scale_columns(_legacy())
    assert old["Δ images"] == "+14 of 2000 images in draw 0 of 3"
    assert old["Δ 95% CI pts"] == "[+0.27, +1.15] in draw 0 of 3" and old["top-1 95% CI"].endswith(" in draw 0 of 3")
    assert "95% interval [+0.27, +1.15] pts in draw 0 of 3" in " ".join(scale_lines(_legacy()))


def test_the_exports_carry_the_mean_counts_and_the_stored_rows_still_open(tmp_path):
    from qcore.present.report import csv_text, report_cell
    from qcore.runs.store import Store

    r = _drawn()
    (row,) = csv.DictReader(csv_text([r]).splitlines())
    lost, gained, n = float(row["images_lost"]), float(row["images_gained"]), int(row["eval_images"])
    assert float(row["top1_delta"]) == pytest.approx(100.0 * (gained - lost) / n, abs=1e-4)
    assert report_cell("images_lost", r.images_lost) == "8.3" and report_cell("images_lost", 3) == "3"
    back = Result.from_dict(json.loads(r.to_json()))
    assert back.draws_lost == [2, 14, 9] and back.images_gained == r.images_gained
    store = Store(tmp_path / "runs.sqlite")
    old = _legacy()
    store.add_result(old)
    body = json.loads(old.to_json())
    del body["draws_lost"], body["draws_gained"]
    with sqlite3.connect(store.path) as c:
        c.execute("UPDATE results SET body=? WHERE run_id=?", (json.dumps(body), old.run_id))
    (loaded,) = store.results()
    assert loaded.draws_lost == [] and loaded.images_lost == 2 and draw0_label(loaded) == " in draw 0 of 3"
