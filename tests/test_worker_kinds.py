"""Jobs of several kinds: the store's kind and result columns (added to older databases), the worker's
registry of runners, and the Learn page's one-layer measurement run as a job."""

from __future__ import annotations

import os
import sqlite3

import pytest

from qcore.runs.store import Store
from qcore.service.worker import JOB_RUNNERS, run_job

OLD_JOBS = """CREATE TABLE jobs (job_id TEXT PRIMARY KEY, created_at REAL NOT NULL, state TEXT NOT NULL,
    config TEXT NOT NULL, specs TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', pid INTEGER, started_at REAL, finished_at REAL,
    cancel INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '')"""


def test_a_database_from_before_kinds_gets_the_columns_and_keeps_its_jobs(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as c:
        c.execute(OLD_JOBS)
        c.execute("INSERT INTO jobs (job_id, created_at, state, config, specs) "
                  "VALUES ('abc123', 1.0, 'done', '{}', '[]')")
    store = Store(db)
    (job,) = store.jobs()
    assert (job.job_id, job.kind, job.result) == ("abc123", "sweep", None)
    jid = store.submit_job({"layer": "fc"}, [], kind="learn-layer", total=4)
    store.update_job(jid, result={"top1": 91.5, "examples": [1, 2]})
    assert store.job(jid).result == {"top1": 91.5, "examples": [1, 2]} and store.job(jid).total == 4
    assert [j.job_id for j in store.jobs(kind="sweep")] == ["abc123"]
    assert [j.job_id for j in store.jobs(kind="learn-layer")] == [jid]
    Store(db)  # opening again adds nothing twice


def test_a_job_of_an_unknown_kind_fails_with_the_kinds_allowed():
    store = Store()
    jid = store.submit_job({}, [], kind="qat", total=1)
    run_job(store, store.claim_next_job(os.getpid()))
    job = store.job(jid)
    assert job.state == "error" and f"job kind 'qat' has no runner; allowed: {', '.join(JOB_RUNNERS)}" in job.error


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("learn-ckpt") / "resnet18.safetensors"
    save_file(torchvision.models.resnet18(num_classes=10).state_dict(), str(path))
    return path


def test_learn_layer_job_measures_with_the_parameters_the_page_shows(checkpoint, fashion_mnist, one_thread):
    from qcore.learn import capture, ranges
    from qcore.learn import source as src
    from qcore.learn.affine import Affine
    from qcore.learn.setting import SIMULATED, LayerSetting

    setting = LayerSetting(weights=str(checkpoint), layer="layer1.0.conv1", kind="activations", bits=3,
                           method="entropy", scheme="symmetric", eval_limit=100)
    store = Store()
    jid = store.submit_job(setting.to_dict(), [], kind="learn-layer", total=4)
    run_job(store, store.claim_next_job(os.getpid()))
    job = store.job(jid)
    assert job.state == "done", job.error
    r = job.result
    assert r["simulated"] == SIMULATED and r["n"] == 100 and r["setting"] == setting.to_dict()
    assert job.done == job.total == 4
    # the page's numbers for the same setting: the same calibration batches, the same range
    loaded = src.load(setting.source)
    c = capture.capture_inputs(loaded.model, setting.layer, src.calibration_batches(loaded))
    lo, hi = ranges.method_range(c, "entropy", 3, True, 99.99)
    a = Affine.fit(lo, hi, 3, True)
    assert r["params"] == {"method": "entropy", "scale": pytest.approx(a.scale, rel=1e-6), "zero_point": 0}
    assert r["agreement"] == pytest.approx(100 * (1 - r["flips"] / 100))
    assert r["top1"] - r["top1_fp32"] == pytest.approx(r["top1_delta"], abs=1e-6)
    assert r["top1"] - r["top1_fp32"] == pytest.approx(r["fixed"] - r["broke"], abs=1e-6)  # one image = 1 point
    ex = r["examples"]
    assert len(ex) == min(8, r["flips"]) and all(e["fp32"] != e["quantized"] for e in ex)
    assert [e["what"] for e in ex] == sorted((e["what"] for e in ex), key=["broke", "fixed", "other"].index)
    assert capture.default_layer(capture.list_layers(loaded.model)) == "layer1.0.conv1"


def test_learn_layer_job_on_weights_folds_batchnorm_and_can_be_cancelled(checkpoint, fashion_mnist, one_thread):
    from qcore.learn import source as src
    from qcore.learn.setting import LayerSetting
    from qcore.quant.observers import weight_range

    setting = LayerSetting(weights=str(checkpoint), layer="fc", kind="weights", bits=2, method="minmax",
                           eval_limit=50)
    store = Store()
    jid = store.submit_job(setting.to_dict(), [], kind="learn-layer", total=4)
    run_job(store, store.claim_next_job(os.getpid()))
    r = store.job(jid).result
    folded, note = src.fold_batchnorm(src.load(setting.source).model)
    lo, hi = weight_range(folded.fc.weight.detach().reshape(1, -1), "minmax", 0, 3, False)
    assert r["params"]["scale"] == pytest.approx(float((hi - lo)[0]) / 3, rel=1e-6)
    assert r["notes"] == [note] and "20 of 20 BatchNorm layers folded" in note

    jid = store.submit_job(setting.to_dict(), [], kind="learn-layer", total=4)
    job = store.claim_next_job(os.getpid())
    store.request_cancel(jid)  # while it runs: the runner stops at its next step
    run_job(store, job)
    assert store.job(jid).state == "cancelled" and store.job(jid).result is None
