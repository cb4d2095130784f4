"""The post-training algorithms on Explore and Sweep through AppTest (ui/ptq_settings.py): a link sets the controls
and the spec submitted carries them; a link's value that is not allowed is said with what is, without a traceback;
the controls are only there for an integer precision in a post-training mode; the Sweep grid compares off and on,
and its estimate counts AdaRound's time. No job runs."""

from __future__ import annotations

import pytest

from qcore.quant.spec import QuantSpec
from tests.apptest import click, errors, open_linked, open_page


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _jobs():
    from qcore.runs.store import Store

    return Store().jobs()


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning]


def test_explore_link_sets_the_controls_and_the_spec_carries_them():
    at = open_page("pages/explore.py", precision="INT4", mode="weight-only", rounding="adaround",
                   bias_correction="on")
    assert at.selectbox(key="rounding").value == "adaround" and at.checkbox(key="bias_correction").value
    assert not at.checkbox(key="equalize").value
    assert at.number_input(key="adaround_iters").value == 500 and at.number_input(key="adaround_images").value == 256
    assert not errors(at) and not _warnings(at)
    help_ = at.checkbox(key="equalize").proto.help
    assert help_.endswith("(https://arxiv.org/abs/1906.04721)") and "+cle" in at.checkbox(key="equalize").label
    at.checkbox(key="equalize").check().run()
    assert at.query_params["equalize"] == "on" and at.query_params["bias_correction"] == "on"
    at.number_input(key="adaround_iters").set_value(50).run()  # (Streamlit's binding writes it in the browser)
    click(at, "Run")
    (job,) = _jobs()
    spec = QuantSpec.from_dict(job.specs[0])
    assert spec.label() == "INT4 per-channel min-max asym weight-only adaround(50 it) +cle +bc"
    at.checkbox(key="bias_correction").uncheck().run()
    assert "bias_correction" not in at.query_params


def test_a_new_tab_opened_on_the_link_sets_them_too():
    at = open_linked("pages/explore.py", precision="INT8", equalize="on", rounding="adaround", adaround_images="64")
    assert at.checkbox(key="equalize").value and at.selectbox(key="rounding").value == "adaround"
    assert at.number_input(key="adaround_images").value == 64 and not errors(at)


@pytest.mark.parametrize("query, said", [
    ({"rounding": "up"}, "The link's rounding='up' was left out: rounding='up' is not allowed; allowed: nearest, "
                         "adaround"),
    ({"equalize": "maybe"}, "The link's equalize='maybe' was left out: equalize='maybe' is not allowed; allowed: "
                            "off, on"),
    ({"rounding": "adaround", "adaround_iters": "0"}, "adaround_iters='0' was left out: adaround_iters=0 is not "
                                                      "allowed; allowed: an integer from 1 to 20,000"),
])  # fmt: skip
def test_a_bad_link_value_is_said_with_what_is_allowed(query, said):
    at = open_page("pages/explore.py", **query)
    assert not at.exception
    assert any(said in w for w in _warnings(at)), _warnings(at)
    assert at.selectbox(key="rounding").value == query.get("rounding", "up").replace("up", "nearest")
    assert not at.checkbox(key="equalize").value and not errors(at)  # left out: the default, and Run still works
    at.checkbox(key="bias_correction").check().run()  # the page goes on; the message stays until that field changes
    assert any(said in w for w in _warnings(at))


def test_the_controls_are_only_there_for_a_post_training_integer_spec():
    for query in ({"precision": "FP16"}, {"precision": "INT8", "mode": "qat"}):
        at = open_page("pages/explore.py", equalize="on", **query)
        assert not [c for c in at.checkbox if c.key in ("equalize", "bias_correction")]
        assert not errors(at)
        click(at, "Run")
    assert all(not QuantSpec.from_dict(j.specs[0]).asks_ptq for j in _jobs())


def test_explore_says_a_backend_that_cannot_take_bias_correction():
    at = open_page("pages/explore.py", precision="INT8", backend="ort", bias_correction="on")
    assert any("This spec is impossible: bias correction needs the backend's own weight rounding" in e and
               "allowed: fx, pt2e, pt2e-openvino, weight-only" in e for e in errors(at)), errors(at)


def test_sweep_grid_compares_off_and_on_and_counts_adarounds_time():
    at = open_page("pages/sweep.py", g_precision="INT8", g_equalize=["off", "on"], g_rounding=["nearest", "adaround"])
    assert at.pills(key="g_equalize").value == ["off", "on"] and at.pills(key="g_bias_correction").value == ["off"]
    assert at.pills(key="g_rounding").value == ["nearest", "adaround"]
    assert "arxiv.org/abs/2004.10568" in at.pills(key="g_rounding").proto.help
    assert at.number_input(key="g_adaround_iters").value == 500
    assert "The grid: **4 specs**." in [m.value for m in at.markdown], [m.value for m in at.markdown]
    cost = " ".join(c.value for c in at.caption if "This sweep takes" in c.value)
    assert "including AdaRound (~" in cost, cost
    at.pills(key="g_bias_correction").set_value(["off", "on"]).run()
    assert "The grid: **8 specs**." in [m.value for m in at.markdown]


def test_sweep_bad_link_value_is_said_until_that_field_changes():
    at = open_page("pages/sweep.py", g_rounding="up", g_equalize="true")
    assert any("The link's g_rounding='up' was left out: rounding='up' is not allowed; allowed: nearest, adaround"
               in w for w in _warnings(at)), _warnings(at)
    assert any("g_equalize='true' was left out: equalize='true' is not allowed; allowed: off, on" in w
               for w in _warnings(at))
    assert at.pills(key="g_rounding").value == ["nearest"] and not at.exception
    at.pills(key="g_rounding").set_value(["nearest", "adaround"]).run()
    assert not any("g_rounding" in w for w in _warnings(at)) and any("g_equalize" in w for w in _warnings(at))
