"""The Learn page through Streamlit's AppTest: it renders for a conv and a linear layer, weights and input
activations; the URL opens it on a setting and keeps it; one click measures the model with only that layer
quantized (the job runs in this process) and shows the flipped images; a missing baseline is pointed to,
never trained. A random-weights resnet18 keeps it fast."""

from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import APP

PAGE = "pages/learn.py"
SECTIONS = ["1 · The map: clipping range, scale and zero point", "2 · Where the error comes from",
            "3 · Granularity: one scale per tensor, per channel, or per group", "4 · Static or dynamic ranges",
            "5 · What it does to the model"]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


@pytest.fixture(scope="module")
def home(tmp_path_factory, resnet18_checkpoint, fashion_mnist):
    """A data home holding the random resnet18 as an upload; returns (home, the URL's checkpoint name)."""
    home = tmp_path_factory.mktemp("learn-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QCORE_HOME", str(home))
        from qcore.service import uploads

        name = uploads.save_checkpoint(resnet18_checkpoint.read_bytes(), resnet18_checkpoint.name)[0].name
    return home, name


@pytest.fixture
def in_home(home, monkeypatch):
    monkeypatch.setenv("QCORE_HOME", str(home[0]))
    return home[1]


def _learn(ckpt: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page(PAGE)
    if ckpt:
        query = {"model": "resnet18", "weights": "upload", "ckpt": ckpt, **query}
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _check_page(at: AppTest, layer: str, kind: str) -> None:
    """Every section drawn for ``layer``'s ``kind``, the formula with the numbers the metrics show."""
    assert [e.value for e in at.error] == []
    assert [s.value for s in at.subheader] == SECTIONS
    assert at.selectbox(key="layer").value == layer and at.radio(key="kind").value == kind
    scale, z = _metric(at, "scale s"), _metric(at, "zero point z")
    formula = at.code[0].value
    assert formula.startswith("q = clamp(round(x / " + scale + ")")
    assert f"x̂ = (q - {z}) × {scale}" in formula if z != "0" else f"x̂ = q × {scale}" in formula
    assert len(at.code[1].value.splitlines()) == 3  # three values worked through
    charts = at.get("plotly_chart")
    assert len(charts) == (10 if kind == "activations" else 8)  # the batch charts only for activations
    info = at.info[0].value
    assert info.startswith("You are looking at " + ("the weights of" if kind == "weights" else "the input of"))
    if kind == "activations":
        assert "on 256 calibration images" in info
        assert any("calibration batches) is fixed before any image is seen" in m.value for m in at.markdown)
    else:
        table = next(d.value for d in at.dataframe if "bits / weight" in d.value.columns)
        assert table["granularity"].iloc[0] == "per-tensor" and table["bits / weight"].iloc[1] > 4


@pytest.mark.parametrize("layer,kind", [("layer1.0.conv1", "weights"), ("layer1.0.conv1", "activations"),
                                        ("fc", "weights")])  # fc's activations: the URL test below
def test_page_renders_for_a_conv_and_a_linear_layer(in_home, layer, kind):
    _check_page(_learn(in_home, layer=layer, kind=kind), layer, kind)


def test_the_url_opens_the_page_on_a_setting_and_keeps_it(in_home):
    at = _learn(in_home, layer="fc", kind="activations", bits="4", method="entropy", scheme="symmetric",
                gran="per-channel", mode="dynamic")
    _check_page(at, "fc", "activations")
    assert at.slider(key="bits").value == 4 and at.selectbox(key="method").value == "entropy"
    assert at.get("segmented_control")[0].value == "symmetric"
    assert any("This tensor has no negative values" in m.value for m in at.markdown)  # after the average pool
    before = _metric(at, "scale s")
    at.slider(key="bits").set_value(6).run()
    assert _metric(at, "scale s") != before  # (the browser test sees the URL follow)
    assert "6-bit sym dynamic per-batch min-max per-channel" in " ".join(m.value for m in at.markdown)
    at.radio(key="kind").set_value("weights").run()  # entropy does not apply to weights: back to min-max
    assert not at.exception and at.selectbox(key="method").value == "minmax"
    assert at.selectbox(key="method").options == ["minmax", "percentile", "mse"]


def test_one_click_measures_the_model_and_shows_the_flipped_images(in_home):
    from qcore.runs.store import Store
    from qcore.service.worker import run_job

    at = _learn(in_home, layer="layer1.0.conv1", bits="2", eval="500")
    assert any("simulated: fake-quantized in float" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Measure the model with only this layer quantized").click().run()
    store = Store()
    job = store.claim_next_job(os.getpid())
    assert job.kind == "learn-layer" and job.config["layer"] == "layer1.0.conv1" and job.config["bits"] == 2
    assert job.config["eval_limit"] == 500 and job.config["weights"].endswith(in_home)
    run_job(store, job)
    assert store.job(job.job_id).state == "done", store.job(job.job_id).error
    at.run()
    r = store.job(job.job_id).result
    assert _metric(at, "Top-1") == f"{r['top1']:.2f} %" and _metric(at, "Images that flip class") == f"{r['flips']:,}"
    assert any(m.value.startswith("With only layer1.0.conv1 weights: 2-bit asym min-max per-tensor, top-1")
               for m in at.markdown)
    assert len(at.get("image")) == min(8, r["flips"]) > 0
    names = r["classes"]
    e = r["examples"][0]
    assert any(f"true **{names[e['label']]}** · FP32 {names[e['fp32']]} · quantized **{names[e['quantized']]}**"
               in c.value for c in at.caption)
    assert at.query_params["job"] == job.job_id
    at.slider(key="bits").set_value(3).run()  # another setting: the result says whose it is
    assert any("This result is for layer1.0.conv1 weights: 2-bit" in i.value for i in at.info)
    at = _learn(None, job=job.job_id)  # a link that names only the job (Runs, Home) opens on its setting
    assert at.slider(key="bits").value == 2 and at.selectbox(key="layer").value == "layer1.0.conv1"
    assert at.query_params["ckpt"] == in_home and _metric(at, "Top-1") == f"{r['top1']:.2f} %"
    assert not at.info or not any("This result is for" in i.value for i in at.info)


def test_a_missing_baseline_is_pointed_to_not_trained():
    at = _learn(None, model="resnet18")  # weights: baseline, and this data home has none (qcore ships another)
    assert any("python -m qcore train --model resnet18 --dataset fashion-mnist" in w.value for w in at.warning)
    assert not at.subheader
