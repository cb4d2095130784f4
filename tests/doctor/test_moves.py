"""A fix measured as a move: queued into the job of the point it fixes (once), the job queued again, the move
recorded and paired with its rows; the worker measures what was queued while it ran. One real small sweep checks
that the per-image bits each row keeps agree with the row's own counts (two numbers of one screen)."""

from __future__ import annotations

import os

import pytest

from qcore.metrics.paired_rows import decode, paired_change
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.moves import Moves, arrows, queue_fix
from qcore.runs.store import Store, spec_key
from qcore.runs.sweep import SweepConfig
from qcore.service.worker import _more_specs, execute_job

INT8_PT = QuantSpec(precision="int8", granularity="per-tensor", backend="fx")
INT8_PC = QuantSpec(precision="int8", granularity="per-channel", backend="fx")


def _store_with_job(tmp_path, state="done") -> tuple[Store, str, Result]:
    store = Store(tmp_path / "runs.sqlite")
    if state == "running":  # run by this (live) process, as the CLI runs a sweep
        jid = store.start_job({"model": "m"}, [INT8_PT.to_dict()], os.getpid()).job_id
    else:
        jid = store.submit_job({"model": "m"}, [INT8_PT.to_dict()])
        store.update_job(jid, state=state)
    base = Result(spec=FP32, model="m", dataset="d", status="ok", sweep_id=jid, top1=90.0, latency_ms_p50=2.0)
    row = Result(spec=INT8_PT, model="m", dataset="d", status="ok", sweep_id=jid, top1=85.0, latency_ms_p50=1.0,
                 baseline_run_id=base.run_id)
    store.add_result(base)
    store.add_result(row)
    return store, jid, row


def test_a_fix_joins_the_job_once_and_queues_it_again(tmp_path):
    store, jid, row = _store_with_job(tmp_path)
    said = queue_fix(store, row, INT8_PC, "per-channel weights")
    job = store.job(jid)
    assert job.state == "queued" and job.total == 3 and "added to" in said
    assert [QuantSpec.from_dict(s) for s in job.specs] == [INT8_PT, INT8_PC]
    queue_fix(store, row, INT8_PC, "per-channel weights")
    assert len(store.job(jid).specs) == 2  # not twice
    moves = Moves(store.path).of_job(jid)
    assert [(m.from_run_id, m.spec_key) for m in moves] == [(row.run_id, spec_key(INT8_PC.to_dict()))]
    assert _more_specs(store, jid)


def test_a_running_job_keeps_running_and_the_fix_waits_for_it(tmp_path):
    store, jid, row = _store_with_job(tmp_path, state="running")
    said = queue_fix(store, row, INT8_PC, "per-channel weights")
    assert store.job(jid).state == "running" and "after its current specs" in said


def test_a_fix_already_measured_is_only_linked(tmp_path):
    store, jid, row = _store_with_job(tmp_path)
    store.add_result(Result(spec=INT8_PC, model="m", dataset="d", status="ok", sweep_id=jid, top1=89.0))
    said = queue_fix(store, row, INT8_PC, "per-channel weights")
    assert "already measured" in said and store.job(jid).state == "done"


def test_fp32_is_linked_and_a_row_of_no_job_is_refused(tmp_path):
    store, jid, row = _store_with_job(tmp_path)
    cpu_fp32 = FP32.replace(device="cpu")  # what a fix names: the same reference, another spelling of its device
    assert cpu_fp32.is_reference and cpu_fp32 != FP32
    assert "links this point to its FP32 row" in queue_fix(store, row, cpu_fp32, "FP32 (the cast is slower here)")
    assert store.job(jid).state == "done" and len(store.job(jid).specs) == 1  # linked, not queued
    fp32_row = next(r for r in store.results(sweep_id=jid) if r.spec.is_reference)
    assert arrows(store.results(sweep_id=jid), Moves(store.path).of_job(jid))[0][1].run_id == fp32_row.run_id
    orphan = Result(spec=INT8_PT, model="m", dataset="d", status="ok", sweep_id="")
    with pytest.raises(ValueError, match="belongs to no sweep job"):
        queue_fix(store, orphan, INT8_PC, "x")


def test_arrows_link_the_origin_to_the_newest_ok_row_of_the_fix(tmp_path):
    store, jid, row = _store_with_job(tmp_path)
    queue_fix(store, row, INT8_PC, "per-channel weights")
    failed = Result(spec=INT8_PC, model="m", dataset="d", status="error", sweep_id=jid, created_at=1.0)
    fixed = Result(spec=INT8_PC, model="m", dataset="d", status="ok", sweep_id=jid, top1=89.0, created_at=2.0)
    rows = [row, failed, fixed]
    assert arrows(rows, Moves(store.path).of_job(jid)) == [(row, fixed, "per-channel weights")]
    assert arrows([row, failed], Moves(store.path).of_job(jid)) == []


def test_a_real_sweep_keeps_bits_that_agree_with_its_counts_and_measures_a_queued_fix(tmp_path, fashion_mnist,
                                                                                    mobilenet_checkpoint):
    config = SweepConfig(model="mobilenet_v3_small", weights=str(mobilenet_checkpoint), calib_size=16,
                         eval_limit=48, latency_budget_s=0.2, fp32_compiled=False)
    store = Store(tmp_path / "runs.sqlite")
    jid = store.submit_job(config.to_dict(), [INT8_PT.to_dict()])
    execute_job(store, store.claim_next_job(pid=1))
    store.update_job(jid, state="done")
    rows = store.results(sweep_id=jid)
    base = next(r for r in rows if r.spec.is_reference)
    q = next(r for r in rows if not r.spec.is_reference)
    for r in (base, q):  # the bits count what the row's top-1 counts
        bits = decode(r.manifest["correct"], r.eval_images)
        assert 100 * bits.float().mean().item() == pytest.approx(r.top1)
    change = paired_change(base, q)  # FP32 -> INT8 paired: the row's own images lost and gained
    assert (change.lost, change.gained) == (q.images_lost, q.images_gained)
    assert change.delta == pytest.approx(q.top1_delta)
    queue_fix(store, q, INT8_PC, "per-channel weights")
    execute_job(store, store.claim_next_job(pid=1))
    fixed = [r for r in store.results(sweep_id=jid) if r.spec == INT8_PC]
    assert len(fixed) == 1 and fixed[0].ok and fixed[0].baseline_run_id == base.run_id
    assert arrows(store.results(sweep_id=jid), Moves(store.path).of_job(jid))[0][1].run_id == fixed[0].run_id


def test_a_named_queued_job_is_claimed_not_the_oldest(tmp_path):
    """``--try`` runs the point's own job here: the job it names, even when an older one waits in the queue."""
    store = Store(tmp_path / "runs.sqlite")
    older = store.submit_job({"model": "m"}, [INT8_PT.to_dict()])
    mine = store.submit_job({"model": "m"}, [INT8_PC.to_dict()])
    job = store.claim_next_job(os.getpid(), mine)
    assert job.job_id == mine and job.state == "running" and store.job(older).state == "queued"
    assert store.claim_next_job(os.getpid(), mine) is None  # no longer queued
    assert store.claim_next_job(os.getpid()).job_id == older
