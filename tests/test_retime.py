"""qcore.service.retime: a busy row's spec is queued again with the settings of the job that measured it."""

from __future__ import annotations

import pytest

from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from qcore.service.retime import retime_request, submit_retime


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


# -- Time again only times (issue 24, item 7) -------------------------------------------------------------------

ACCURACY = ("top1", "top5", "top1_delta", "agreement", "logit_kl", "eval_images", "top1_lo", "top1_hi", "images_lost",
            "images_gained", "top1_delta_lo", "top1_delta_hi", "size_bytes", "size_ratio", "quantized_layers",
            "total_layers", "ptq_top1", "control_top1", "recovered", "finetune_seconds", "qat_images_won",
            "qat_images_lost", "qat_vs_ptq_lo", "qat_vs_ptq_hi", "calib_draws", "top1_std", "calib_seeds")  # fmt: skip


def _measured(spec, run_id, backend, top1, **extra):
    return Result(spec, "resnet18", "fashion-mnist", run_id=run_id, backend=backend, kernel="native", top1=top1,
                  top5=99.0, top1_delta=top1 - 91.0, agreement=98.5, logit_kl=0.01, eval_images=2000,
                  top1_lo=top1 - 1.2, top1_hi=top1 + 1.1, images_lost=14, images_gained=4, top1_delta_lo=-0.8,
                  top1_delta_hi=-0.2, size_bytes=11_000_000, size_ratio=0.25, quantized_layers=21, total_layers=21,
                  latency_ms_p50=99.0, speedup=0.1, busy="load 5.0 on 2 threads", **extra)  # fmt: skip


def _count_calls(monkeypatch) -> dict:
    """Every function that reads calibration images or evaluates, counted (and still run)."""
    import qcore.data
    import qcore.data.draws
    import qcore.metrics.draws
    import qcore.metrics.measure
    import qcore.qat.finetune
    import qcore.qat.measure
    import qcore.runs.sweep

    calls = {}
    targets = [(qcore.data, "split_calib_eval"), (qcore.data.draws, "calibration_draws"),
               (qcore.runs.sweep, "calibration_draws"), (qcore.runs.sweep, "prepare"),
               (qcore.runs.sweep, "accuracy_into"), (qcore.runs.sweep, "measure_spec"), (qcore.runs.sweep, "predict"),
               (qcore.metrics.measure, "predict"), (qcore.metrics.draws, "draw_accuracies"),
               (qcore.qat.measure, "measure_qat"), (qcore.qat.finetune, "finetune")]
    for module, name in targets:
        if not hasattr(module, name):
            continue
        real = getattr(module, name)

        def counted(*a, _real=real, _name=f"{module.__name__}.{name}", **kw):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*a, **kw)

        monkeypatch.setattr(module, name, counted)
    return calls


def test_time_again_only_times_and_copies_what_the_rows_measured(tmp_path, monkeypatch, fashion_mnist,
                                                                resnet18_checkpoint, one_thread):
    from qcore.service.worker import run_job

    store = Store(tmp_path / "runs.sqlite")
    config = SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), eval_limit=16, calib_size=32,
                         latency_budget_s=0.2, fp32_compiled=False).to_dict()
    int8 = QuantSpec("int8", granularity="per-channel")
    qat = QuantSpec("int8", granularity="per-channel", mode="qat", qat_epochs=0.1)
    int4 = QuantSpec("int4", granularity="per-group", group_size=64, calibration="mse", mode="weight-only")
    jid = store.submit_job(config, [s.to_dict() for s in (int8, qat, int4)])
    store.claim_next_job(1)
    store.update_job(jid, state="done", done=4)
    base = _measured(FP32, "base0", "float", 91.0, sweep_id=jid, baseline_run_id="base0")
    rows = [_measured(int8, "q8", "fx", 90.5), _measured(int4, "q4", "weight-only", 89.0),
            _measured(qat, "qat", "fx", 90.9, ptq_top1=90.5, control_top1=91.2, recovered=0.57, finetune_seconds=40.0,
                      qat_images_won=12, qat_images_lost=4, qat_vs_ptq_lo=0.1, qat_vs_ptq_hi=0.7)]
    for r in [base, *rows]:
        r.sweep_id, r.baseline_run_id = jid, "base0"
        store.add_result(r)
    again = submit_retime(store, ["q8", "qat", "q4"])
    assert store.job(again).config["retime_job"] == jid
    calls = _count_calls(monkeypatch)
    run_job(store, store.claim_next_job(1))
    job = store.job(again)
    assert job.state == "done", job.error
    assert calls == {}, calls  # no calibration images read, nothing evaluated, no fine-tune
    new = {r.retime_of: r for r in store.results(sweep_id=again)}
    fp32 = new.pop("base0")  # the FP32 row the rows were measured against, timed again beside them
    assert fp32.spec.is_reference and fp32.top1 == 91.0 and fp32.speedup == 1.0 and fp32.baseline_run_id == fp32.run_id
    assert set(new) == {"q8", "qat", "q4"}
    for original in rows:
        r = new[original.run_id]
        assert r.status == "ok", r.error
        assert {k: getattr(r, k) for k in ACCURACY} == {k: getattr(original, k) for k in ACCURACY}
        assert r.spec == original.spec and r.backend == original.backend and r.baseline_run_id == fp32.run_id
        assert r.latency_ms_p50 != 99.0 and r.timed_calls > 0  # timed now
        assert r.speedup == pytest.approx(r.fp32_latency_ms_p50 / r.latency_ms_p50)
        assert r.notes[0].startswith(f"timed again only: accuracy, size and layers copied from run {original.run_id} "
                                     f"of job {jid}")
    assert store.job(again).done == store.job(again).total == 4
