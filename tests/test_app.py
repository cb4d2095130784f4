"""The app through Streamlit's AppTest: every page renders, a small run gives metric cards and a table,
bad input gives a message and leaves earlier results in place.

Jobs run in this process (``qcore.service.worker.run_job``) instead of a worker process, so the tests are
deterministic; ``QCORE_APP_NO_WORKER`` keeps the pages from starting one.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qcore.quant.spec import QuantSpec
from tests.apptest import APP, ROOT  # noqa: F401  (APP: other test files import it from here)
from tests.apptest import errors as _errors  # noqa: F401
from tests.apptest import open_linked as _app  # noqa: F401

PAGES = {"home": None, "explore": "pages/explore.py", "sweep": "pages/sweep.py", "runs": "pages/runs.py"}
TITLES = {"home": "qcore: what quantization costs and saves", "explore": "Explore one setting",
          "sweep": "Sweep & Pareto", "runs": "Runs"}  # fmt: skip
# A small, fast run: few images, a short timing budget, INT8 dynamic (no calibration pass).
SMALL = {"model": "resnet18", "calib": "32", "eval": "100", "budget": "0.5", "weights": "upload"}






def _store():
    from qcore.runs.store import Store

    return Store()


def _run_queued_job() -> str:
    from qcore.service.worker import run_job

    store = _store()
    job = store.claim_next_job(os.getpid())
    assert job is not None, "the page did not queue a job"
    run_job(store, job)
    assert store.job(job.job_id).state == "done", store.job(job.job_id).error
    return job.job_id


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


@pytest.fixture(autouse=True, scope="module")
def _full_errors():
    """The app redacts unexpected errors (client.showErrorDetails = none); a failing test shows them."""
    from streamlit import config

    before = config.get_option("client.showErrorDetails")
    config.set_option("client.showErrorDetails", "full")
    yield
    config.set_option("client.showErrorDetails", before)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, resnet18_checkpoint, fashion_mnist):
    """One Explore run (FP32 + INT8 dynamic) on the random resnet18, driven through the page."""
    home = tmp_path_factory.mktemp("app-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QCORE_HOME", str(home))
        mp.delenv("QCORE_DB", raising=False)
        mp.setenv("QCORE_APP_NO_WORKER", "1")
        at = _app("pages/explore.py", mode="dynamic", **SMALL)
        at.file_uploader(key="ckpt_upload").set_value(
            ("any-name.bin", resnet18_checkpoint.read_bytes(), "application/octet-stream")
        ).run()  # checked by content, not by name
        assert not _errors(at), _errors(at)
        next(b for b in at.button if b.label == "Run").click().run()
        ckpt = at.query_params["ckpt"]
        jid = _run_queued_job()
    return {"home": home, "job": jid, "ckpt": ckpt}


@pytest.fixture
def in_finished_run(finished_run, monkeypatch):
    monkeypatch.setenv("QCORE_HOME", str(finished_run["home"]))
    return finished_run


# -- every page renders ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_without_exception(name):
    at = _app(PAGES[name])
    assert [t.value for t in at.title] == [TITLES[name]]
    assert not _errors(at)


def test_home_shows_the_hardware_and_starts_the_offline_default():
    at = _app()
    labels = [m.label for m in at.metric]
    assert {"CPU", "Threads", "GPU", "INT8 engine"} <= set(labels)
    import torch

    from qcore.env.gpu import ability_text, detect_gpu
    from ui.text import plain

    gpu_line = [c.value for c in at.caption if "GPU" in c.value]
    assert gpu_line == [plain(ability_text(detect_gpu()))]  # what the GPU's tensor cores run, or that there is none
    assert gpu_line[0].startswith("GPU: " if torch.cuda.is_available() else "No CUDA GPU is visible")
    next(b for b in at.button if b.label == "Start the default").click().run()
    jobs = _store().jobs()
    assert len(jobs) == 1 and jobs[0].state == "queued"
    assert jobs[0].config["model"] == "mobilenet_v3_small" and jobs[0].config["dataset"] == "fashion-mnist"
    assert [s["precision"] for s in jobs[0].specs] == ["int8", "int4"]  # FP32 is the baseline, always run


# -- a small run ----------------------------------------------------------------------------------


def test_explore_run_shows_metric_cards_explanation_and_table(in_finished_run):
    at = _app("pages/explore.py", job=in_finished_run["job"], ckpt=in_finished_run["ckpt"], mode="dynamic", **SMALL)
    labels = [m.label for m in at.metric]
    assert ["Top-1", "Agreement with FP32", "Speed-up vs FP32", "Size vs FP32"] == labels[:4]
    assert at.metric[0].value.endswith("%") and "pts vs FP32" in at.metric[0].delta
    assert any("dynamic mode only quantizes Linear layers" in i.value for i in at.info)
    df = at.dataframe[0].value
    assert list(df["spec"]) == ["INT8 per-channel min-max asym dynamic", "FP32"]  # newest first, as the CSV
    assert set(df["status"]) == {"ok"} and df["measured"].is_monotonic_decreasing


def test_impossible_spec_shows_the_message_and_keeps_the_results(in_finished_run):
    at = _app("pages/explore.py", job=in_finished_run["job"], ckpt=in_finished_run["ckpt"], **SMALL)
    at.selectbox(key="precision").select("int4").run()
    at.selectbox(key="mode").select("static").run()
    assert any("not allowed with precision='int4'" in e for e in _errors(at)), _errors(at)
    assert next(b for b in at.button if b.label == "Run").disabled
    assert [m.label for m in at.metric][:1] == ["Top-1"]  # the earlier result is still shown


def test_sweep_page_shows_table_chart_and_details(in_finished_run):
    at = _app("pages/sweep.py", job=in_finished_run["job"])
    assert any("finished" in s.value for s in at.success)
    (table,) = [d for d in at.dataframe if d.key.startswith("table-")]  # (the other is the settings' preview)
    assert len(table.value) == 2
    run_id = table.value["run_id"].iloc[0]  # newest first: the INT8 row
    at.selectbox(key=f"detail-{in_finished_run['job']}").select(run_id).run()
    assert [m.label for m in at.metric][:2] == ["Top-1", "Agreement with FP32"]
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download JSON", "Download HTML report"]


def test_impossible_grid_shows_the_reasons():
    at = _app("pages/sweep.py", g_precision="INT4", g_mode="static")
    assert any("no combination of these values is a valid spec" in e for e in _errors(at)), _errors(at)
    assert any("not allowed with precision='int4'" in m.value for m in at.markdown)
    assert next(b for b in at.button if b.label == "Run sweep").disabled


def test_a_sweep_link_naming_int4_and_no_mode_opens_on_weight_only():
    at = _app("pages/sweep.py", g_precision="INT4")  # as a precision chosen on the page, it adds its mode
    assert at.pills(key="g_mode").value == ["static", "weight-only"] and _errors(at) == []
    assert any("The grid: **1 spec**" in m.value for m in at.markdown)


def test_runs_page_lists_compares_and_survives_a_restart(in_finished_run):
    at = _app("pages/runs.py")  # a fresh AppTest: a new session, as after a server restart
    assert len(at.dataframe[0].value) == 2
    ids = list(at.dataframe[0].value["run_id"])
    at.selectbox(key="cmp_a").select(ids[0]).run()
    at.selectbox(key="cmp_b").select(ids[1]).run()
    assert [m.label for m in at.metric][:2] == ["Top-1 %", "Agreement %"]
    at.multiselect(key="f_precision").select("int8").run()
    assert list(at.dataframe[0].value["run_id"]) == [ids[0]]  # newest first
    assert at.multiselect(key="f_precision").options == ["FP32", "INT8"]  # named as on every page


def test_runs_page_deletes_selected_rows(in_finished_run, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(in_finished_run["home"], copy)  # the shared run stays intact for the other tests
    monkeypatch.setenv("QCORE_HOME", str(copy))
    at = _app("pages/runs.py")
    at.session_state["runs-table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.checkbox(key="delete_sure").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert len(_store().results()) == 1
    assert len(at.dataframe[0].value) == 1


def test_deleting_a_jobs_fp32_row_is_said_and_fp32_can_be_measured_again(in_finished_run, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(in_finished_run["home"], copy)
    monkeypatch.setenv("QCORE_HOME", str(copy))
    jid = in_finished_run["job"]
    fp32 = next(r for r in _store().results() if r.spec.is_reference)
    at = _app("pages/runs.py")
    row = list(at.dataframe[0].value["run_id"]).index(fp32.run_id)
    at.session_state["runs-table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert any(f"{fp32.run_id} is the FP32 row of job {jid}" in w.value and "1 other row(s)" in w.value
               for w in at.warning), [w.value for w in at.warning]
    at.checkbox(key="delete_sure").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    at = _app("pages/sweep.py", job=jid)  # the orphaned chart says so, and offers FP32 again
    assert any(f"The FP32 row of job {jid} was deleted" in w.value for w in at.warning), [w.value for w in at.warning]
    next(b for b in at.button if b.label == "Measure FP32 again").click().run()
    assert _store().job(jid).state == "queued"
    _run_queued_job()
    rows = _store().results(sweep_id=jid)
    assert sorted(r.label for r in rows) == ["FP32", "INT8 per-channel min-max asym dynamic"]
    at = _app("pages/sweep.py", job=jid)
    assert not any("was deleted" in w.value for w in at.warning)


def test_a_zero_change_has_no_arrow_and_no_colour(in_finished_run):
    at = _app("pages/sweep.py", job=in_finished_run["job"])
    fp32 = next(r for r in _store().results() if r.spec.is_reference)
    at.selectbox(key=f"detail-{in_finished_run['job']}").select(fp32.run_id).run()
    top1 = at.metric[0]
    assert top1.label == "Top-1" and top1.delta == "+0.00 pts vs FP32"
    assert top1.proto.direction == top1.proto.MetricDirection.NONE and top1.proto.color == top1.proto.MetricColor.GRAY


def test_home_says_what_the_first_start_costs():
    at = _app()
    text = next(m.value for m in at.markdown if m.value.startswith("**What the first start costs"))
    assert "the trained baseline shipped with qcore is used (88.87% top-1 on 10,000 test images): nothing to " \
        "train" in text
    assert "The sweep: about " in text and "18 s of timing, the 6 s budget for FP32 and each spec" in text
    at = _app("pages/explore.py", model="resnet18", weights="baseline")  # no baseline: training's cost, estimated
    assert any("Baseline for resnet18 on Fashion-MNIST: no baseline yet: the first run trains one first, about 7 "
               "min (1,638 steps at the speed recorded on a quiet 2-core CPU for resnet18" in c.value
               for c in at.caption), [c.value for c in at.caption]


def test_a_baseline_trained_by_another_process_is_shown_as_such():
    from qcore.nets import baseline_lock, train

    path = train.baseline_path("resnet18", "fashion-mnist", train.recipe_for("resnet18", "fashion-mnist"))
    baseline_lock.lock_path(path).touch()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(3600)",
                               str(baseline_lock.lock_path(path))], stdout=subprocess.PIPE, text=True)
    try:  # held until killed below: a page that takes minutes to open on a loaded machine still finds it held
        assert holder.stdout.readline().strip() == "held"
        at = _app("pages/explore.py", model="resnet18", weights="baseline")
        assert any("being trained by another process right now" in c.value for c in at.caption), \
            [c.value for c in at.caption]
    finally:
        holder.kill()
        holder.wait()
def test_rows_show_their_scale_and_a_busy_row_can_be_timed_again(in_finished_run, tmp_path, monkeypatch):
    """Each row: the FP32 p50 it was divided by, p90/p50 and calls, top-1's interval, the change in images;
    a row flagged busy says so and Time again queues its spec with the job's settings (issue 11, items 2, 7)."""
    copy = tmp_path / "copy"
    shutil.copytree(in_finished_run["home"], copy)
    monkeypatch.setenv("QCORE_HOME", str(copy))
    store = _store()
    jid = in_finished_run["job"]
    int8 = next(r for r in store.results(sweep_id=jid) if not r.spec.is_reference)
    int8.busy = "load 6.0 on the machine, above the 2 threads timed with"
    store.add_result(int8)
    at = _app("pages/sweep.py", job=jid)
    frames = [d.value for d in at.dataframe]
    df = next((f for f in frames if "run_id" in f.columns), None)
    assert df is not None, [list(f.columns) for f in frames]
    row = df[df["run_id"] == int8.run_id].iloc[0]
    assert row["FP32 p50 ms"] == pytest.approx(int8.fp32_latency_ms_p50) and row["calls"] == int8.timed_calls > 0
    assert row["p90/p50"] >= 1.0 and row["busy"].startswith("⚠ load 6.0")
    assert row["top-1 95% CI"].startswith("[") and row["Δ images"].endswith("of 100 images")
    at.selectbox(key=f"detail-{jid}").select(int8.run_id).run()
    assert any("Timed while the machine was busy" in w.value for w in at.warning)
    assert any("against FP32 p50" in c.value and "calls" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Time again").click().run()
    assert not at.exception, [e.value for e in at.exception]
    again = next(j for j in store.jobs() if j.job_id != jid)
    assert again.state == "queued" and again.config["retime_of"] == [int8.run_id]
    assert again.specs == [int8.spec.to_dict()] and again.config["model"] == "resnet18"


def test_runs_page_times_the_busy_rows_again(in_finished_run, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(in_finished_run["home"], copy)
    monkeypatch.setenv("QCORE_HOME", str(copy))
    store = _store()
    for r in store.results():  # measured on whatever machine runs the tests: quiet, as far as this test goes
        r.busy = ""
        store.add_result(r)
    at = _app("pages/runs.py")
    assert not any(b.label.startswith("Time again") for b in at.button)  # nothing flagged, nothing selected
    int8 = next(r for r in store.results() if not r.spec.is_reference)
    int8.busy = "spread p90/p50 1.60, above 1.3"
    store.add_result(int8)
    at = _app("pages/runs.py")
    base = next(r for r in store.results() if r.spec.is_reference)
    base.fp32_latency_ms_p50, int8.fp32_latency_ms_p50 = 10.0, 20.0  # compared with FP32 timings 2x apart
    store.add_result(base)
    store.add_result(int8)
    at = _app("pages/runs.py")
    at.selectbox(key="cmp_a").select(base.run_id).run()
    at.selectbox(key="cmp_b").select(int8.run_id).run()
    assert any("A was timed against FP32 p50 10.00 ms and B against 20.00 ms" in w.value for w in at.warning)
    assert "FP32 p50 ms" in [m.label for m in at.metric]
    next(b for b in at.button if b.label == "Time again the busy-flagged 1 result(s)").click().run()
    assert [j.config.get("retime_of") for j in store.jobs()][0] == [int8.run_id]


# -- jobs: queue, cancel, interrupted -------------------------------------------------------------------


def _submit(store, n: int = 1) -> list[str]:
    from qcore.runs.sweep import SweepConfig

    return [store.submit_job(SweepConfig().to_dict(), [QuantSpec("int8").to_dict()]) for _ in range(n)]


def test_second_session_sees_the_queue_position():
    store = _store()
    first, second = _submit(store, 2)
    store.claim_next_job(os.getpid())  # the first one runs (in a process that is alive: this one)
    at = _app("pages/sweep.py", job=second)
    assert any("Position 1 in the queue (it runs next)" in i.value for i in at.info), [i.value for i in at.info]
    at = _app("pages/sweep.py", job=first)
    assert "running" in at.get("progress")[0].proto.text
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert store.job(first).cancel


def test_interrupted_job_offers_resume():
    store = _store()
    (jid,) = _submit(store)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.claim_next_job(gone.pid)  # "running" under a process that no longer exists
    at = _app("pages/sweep.py", job=jid)
    assert any("interrupted" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Resume the rest").click().run()
    assert store.job(jid).state == "queued"


def test_every_calibration_and_granularity_of_explore_renders():
    """Per-group granularity and percentile calibration add their own widgets (group size, percentile), whose
    defaults come from DEFAULT_GRID (QuantSpec() normalises the unused ones to 0)."""
    at = _app("pages/explore.py", granularity="per-group", mode="weight-only", calibration="percentile")
    assert at.selectbox(key="group").value == 64 and at.number_input(key="pct").value == 99.99
    assert not _errors(at)
    at = _app("pages/explore.py", precision="FP16", backend="fx")  # the registry's refusal, before a run
    assert any("backend='fx' does not run fp16; allowed: auto, float" in e for e in _errors(at)), _errors(at)
    assert next(b for b in at.button if b.label == "Run").disabled


def test_settings_come_from_and_stay_in_the_url():
    at = _app("pages/explore.py", model="mobilenet_v3_small", precision="FP16", batch="4", calib="64")
    assert at.selectbox(key="model").value == "mobilenet_v3_small"
    assert at.selectbox(key="precision").value == "fp16"
    assert at.number_input(key="batch").value == 4 and at.number_input(key="calib").value == 64
    assert at.selectbox(key="granularity").disabled  # integer settings mean nothing for FP16


# -- bad input --------------------------------------------------------------------------------------


def test_upload_that_is_not_a_checkpoint_is_refused():
    at = _app("pages/explore.py", weights="upload")
    at.file_uploader(key="ckpt_upload").set_value(("weights.pt", b"<html>not weights</html>", "text/html")).run()
    assert any("not a checkpoint" in e for e in _errors(at)), _errors(at)
    assert "ckpt" not in at.query_params


def test_pickle_that_needs_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo never",))

    at = _app("pages/explore.py", weights="upload")
    at.file_uploader(key="ckpt_upload").set_value(("w.pt", pickle.dumps(Evil(), protocol=2), "")).run()
    assert any("needs arbitrary code" in e or "could not be read" in e for e in _errors(at)), _errors(at)


def test_zip_with_a_path_outside_its_folder_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cats/1.png", b"x")
        zf.writestr("../../evil.txt", b"x")
    at = _app("pages/explore.py", dataset="upload a zip of class folders ...")
    at.file_uploader(key="dataset_upload").set_value(("data.zip", buf.getvalue(), "application/zip")).run()
    assert any("refused" in e and "'..'" in e for e in _errors(at)), _errors(at)


def test_zip_of_class_folders_becomes_the_dataset():
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, cls in enumerate(["cats", "dogs"]):
            for j in range(3):
                png = io.BytesIO()
                Image.new("RGB", (8, 8), (80 * i, 40 * j, 0)).save(png, format="PNG")
                zf.writestr(f"pets/{cls}/{j}.png", png.getvalue())
        zf.writestr("pets/dogs/broken.png", b"not a png")
    at = _app("pages/explore.py", dataset="upload a zip of class folders ...")
    at.file_uploader(key="dataset_upload").set_value(("anything.bin", buf.getvalue(), "")).run()
    assert not _errors(at), _errors(at)
    name = at.selectbox(key="dataset").value
    assert name.startswith("imagefolder:") and name.endswith("/pets")
    assert sorted(p.name for p in Path(name.split(":", 1)[1]).iterdir()) == ["cats", "dogs"]
    # what it holds, right away, in the user's names (never a server path)
    summary = "**anything.bin**: 2 class(es), 6 image(s) (cats 3, dogs 3); 1 unreadable file(s) skipped"
    assert summary in [c.value for c in at.caption], [c.value for c in at.caption]
    assert len(at.get("image")) == 1 and len(at.get("image")[0].proto.imgs) == 6  # thumbnails
    from ui.common import dataset_label

    assert dataset_label(name) == "anything.bin · 2 classes, 6 images"
    assert not any(str(Path(name.split(":", 1)[1]).parent) in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Delete this upload").click().run()
    assert at.selectbox(key="dataset").value == "fashion-mnist"
    assert not Path(name.split(":", 1)[1]).exists()


@pytest.mark.parametrize("entries, reason", [
    ({"pets/cats/1.png": "png", "pets/cats/2.png": "png"}, "holds one class folder with images ('cats')"),
    ({"a/x.txt": b"text", "b/y.txt": b"text"}, "holds no readable images in class folders (it has 2 file(s) "
                                                 "that are not images)"),
    ({"cats/1.png": "png", "dogs/1.png": "png"}, "'cats' (1), 'dogs' (1) have fewer than 2 readable images"),
])  # fmt: skip
def test_zip_that_cannot_work_is_refused_at_upload(entries, reason):
    from PIL import Image

    from qcore.env.paths import subdir

    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, format="PNG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for entry, content in entries.items():
            zf.writestr(entry, png.getvalue() if content == "png" else content)
    at = _app("pages/explore.py", dataset="upload a zip of class folders ...")
    at.file_uploader(key="dataset_upload").set_value(("mine.zip", buf.getvalue(), "")).run()
    assert any(e.startswith("mine.zip cannot be a classifier's dataset: ") and reason in e for e in _errors(at)), \
        _errors(at)
    assert at.selectbox(key="dataset").value == "__upload__"  # nothing new to choose: nothing was stored
    assert not any((subdir("uploads") / "datasets").iterdir())


def _pt(state) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def test_checkpoint_that_does_not_fit_the_model_keeps_run_disabled_and_can_be_deleted():
    import torch

    at = _app("pages/explore.py", model="resnet18", weights="upload")
    at.file_uploader(key="ckpt_upload").set_value(("one.pt", _pt({"fc.weight": torch.zeros(10, 512)}), "")).run()
    assert "**one.pt**: 1 tensors, 0.01 M values" in [c.value for c in at.caption]
    assert any(e.startswith("one.pt does not fit resnet18: missing keys (121): bn1.bias") for e in _errors(at)), \
        _errors(at)
    assert next(b for b in at.button if b.label == "Run").disabled  # before Run, not after it
    path = Path(_store().path.parent / "uploads" / at.query_params["ckpt"])
    assert path.is_file()
    next(b for b in at.button if b.label == "Delete this checkpoint").click().run()
    assert not path.exists() and "ckpt" not in at.query_params
    assert any("upload a checkpoint" in e for e in _errors(at))


def test_checkpoint_with_nan_weights_is_refused_naming_the_tensor():
    import torch

    bad = torch.zeros(10, 512)
    bad[2, 5] = float("nan")
    at = _app("pages/explore.py", weights="upload")
    at.file_uploader(key="ckpt_upload").set_value(("diverged.pt", _pt({"fc.weight": bad}), "")).run()
    assert any(e.startswith("diverged.pt: tensor 'fc.weight' (10, 512) holds NaN values") for e in _errors(at)), \
        _errors(at)
    assert "ckpt" not in at.query_params


def test_number_inputs_take_their_ranges_from_the_cli_table():
    from qcore.guards.limits import LIMITS

    at = _app("pages/explore.py")
    for key, name in (("batch", "batch_size"), ("imgsize", "image_size"), ("size", "input_size"),
                      ("calib", "calib_size"), ("seed", "seed"), ("budget", "latency_budget_s")):
        widget = at.number_input(key=key)
        assert (widget.min, widget.max) == (LIMITS[name].lo, LIMITS[name].hi), key
    assert at.number_input(key="eval").max == LIMITS["eval_limit"].hi


def test_model_that_cannot_take_the_input_size_is_refused():
    at = _app("pages/explore.py", model="inception_v3")
    assert any(e.startswith("Fashion-MNIST images at 32 px: inception_v3 cannot take 32x32") and "is 96" in e
               and "Set 'Image size (px)'" in e for e in _errors(at)), _errors(at)
    assert next(b for b in at.button if b.label == "Run").disabled
    at = _app("pages/explore.py", model="inception_v3", imgsize="96")  # the size the message suggests
    assert not any("inception_v3" in e for e in _errors(at)), _errors(at)
    assert not next(b for b in at.button if b.label == "Run").disabled


def test_checkpoint_name_in_the_url_cannot_point_outside_the_uploads(tmp_path):
    outside = tmp_path / "a.pt"
    outside.write_bytes(b"PK\x03\x04")
    at = _app("pages/explore.py", weights="upload", ckpt=str(outside))
    assert any("upload a checkpoint" in e for e in _errors(at))


def test_upload_dir_is_clean_after_a_refused_checkpoint():
    from qcore.env.paths import subdir

    at = _app("pages/explore.py", weights="upload")
    bad_header = b"\x10" + b"\0" * 7 + b"{not json}xxxxxx"  # a length, then no JSON object
    at.file_uploader(key="ckpt_upload").set_value(("w.safetensors", bad_header, "")).run()
    assert _errors(at)
    assert not [p for p in subdir("uploads").iterdir() if p.is_file()]
    shutil.rmtree(subdir("uploads"))


def test_config_keeps_xsrf_and_cors_on_and_limits_uploads():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server.get("enableXsrfProtection", True) is True and server.get("enableCORS", True) is True
    assert 0 < server["maxUploadSize"] <= 1000  # MB
    assert server["address"] == "127.0.0.1"  # `streamlit run app.py` listens on this machine only


def test_a_failed_jobs_message_names_no_server_path():
    from qcore.env.paths import subdir
    from qcore.runs.sweep import SweepConfig
    from qcore.service import uploads

    path, _, _ = uploads.save_checkpoint(_pt({"fc.weight": __import__("torch").zeros(10, 512)}), "one.pt")
    store = _store()
    jid = store.submit_job(SweepConfig(weights=str(path)).to_dict(), [])
    store.claim_next_job(os.getpid())
    store.update_job(jid, state="error", error=f"WeightsError: checkpoint {path} does not fit resnet18")
    at = _app("pages/sweep.py", job=jid)
    assert any("WeightsError: checkpoint one.pt does not fit resnet18" in e for e in _errors(at)), _errors(at)
    assert not any(str(subdir("uploads")) in e for e in _errors(at))
