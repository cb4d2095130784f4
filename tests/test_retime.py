"""qcore.retime: a busy row's spec is queued again with the settings of the job that measured it."""

from __future__ import annotations

import pytest

from qcore.result import Result
from qcore.retime import retime_request, submit_retime
from qcore.spec import FP32, QuantSpec
from qcore.store import Store
from qcore.sweep import SweepConfig


def _stored(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    config = SweepConfig(model="resnet18", batch_size=4, eval_limit=100, seed=3).to_dict()
    jid = store.submit_job(config, [QuantSpec("int8").to_dict(), QuantSpec("fp16").to_dict()])
    rows = [Result(FP32, "resnet18", "fashion-mnist", sweep_id=jid, run_id="base"),
            Result(QuantSpec("int8"), "resnet18", "fashion-mnist", sweep_id=jid, run_id="q8", busy="load 5.0"),
            Result(QuantSpec("fp16"), "resnet18", "fashion-mnist", sweep_id=jid, run_id="h16")]
    for r in rows:
        store.add_result(r)
    return store, jid, config


def test_time_again_queues_the_specs_with_the_settings_of_their_job(tmp_path):
    store, jid, config = _stored(tmp_path)
    new = submit_retime(store, ["q8", "base", "q8"])
    job = store.job(new)
    assert job.state == "queued" and job.kind == "sweep" and new != jid
    assert job.specs == [QuantSpec("int8").to_dict()]  # FP32 is measured first anyway; duplicates once
    assert job.config["retime_of"] == ["q8", "base"]
    assert SweepConfig.from_dict(job.config) == SweepConfig.from_dict(config)  # same model, batch, images, seed
    again = store.job(submit_retime(store, ["q8"]))  # a row of a time-again job can be timed again
    assert SweepConfig.from_dict(again.config).batch_size == 4


def test_time_again_refuses_what_it_cannot_do(tmp_path):
    store, jid, _ = _stored(tmp_path)
    with pytest.raises(ValueError, match="no rows chosen"):
        retime_request(store, [])
    with pytest.raises(ValueError, match="no result 'nope'"):
        retime_request(store, ["nope"])
    other = store.submit_job(SweepConfig(model="mobilenet_v3_small").to_dict(), [])
    store.add_result(Result(QuantSpec("int8"), "mobilenet_v3_small", "fashion-mnist", sweep_id=other, run_id="m8"))
    with pytest.raises(ValueError, match="one job at a time"):
        retime_request(store, ["q8", "m8"])
    store.add_result(Result(QuantSpec("int8"), "resnet18", "fashion-mnist", sweep_id="gone", run_id="orphan"))
    with pytest.raises(ValueError, match="no longer stored"):
        retime_request(store, ["orphan"])
