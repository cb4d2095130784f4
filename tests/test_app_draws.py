"""The app with calibration draws: the field (range from the CLI table, kept in the URL), a run that draws,
each draw shown as a dot around the mean in Explore, and the Pareto chart's bars on the Sweep page."""

from __future__ import annotations

import pytest

from qcore.guards.limits import LIMITS
from tests.test_app import _app, _errors, _run_queued_job


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def test_explore_with_three_draws_shows_each_draw(resnet18_checkpoint, fashion_mnist):
    at = _app("pages/explore.py", model="resnet18", precision="int8", granularity="per-tensor", draws="3",
              calib="16", eval="40",
              budget="0.2", weights="upload")
    field = at.number_input(key="draws")
    assert field.value == 3 and (field.min, field.max) == (LIMITS["calib_draws"].lo, LIMITS["calib_draws"].hi)
    at.file_uploader(key="ckpt_upload").set_value(("r.bin", resnet18_checkpoint.read_bytes(), "")).run()
    assert not _errors(at), _errors(at)
    next(b for b in at.button if b.label == "Run").click().run()
    assert at.query_params["draws"] == "3"
    jid = _run_queued_job()
    at = _app("pages/explore.py", job=jid, ckpt=at.query_params["ckpt"], model="resnet18", precision="int8",
              granularity="per-tensor", draws="3", calib="16", eval="40", budget="0.2", weights="upload")
    caps = [c.value for c in at.caption]
    assert any(c.startswith("3 calibrations of 16 training images each, disjoint (seeds 0 to 2), every one "
                            "evaluated on the same 40 images: std ") for c in caps), caps
    assert any(n.value.count("top-1 is the mean of 3 calibration draws") for n in at.markdown)
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # the draws' dots, then the latency spread
    sweep = _app("pages/sweep.py", job=jid)
    specs = [c.proto.spec for c in sweep.get("plotly_chart")]
    assert any("calibration draws: min-max of top-1 (3 draws)" in s for s in specs)
