"""One QAT row of a sweep: the PTQ counterpart, the FP32 control and the QAT model, on the same images.

:func:`measure_qat` (called by :func:`qcore.runs.sweep.run_sweep` for a ``mode="qat"`` spec):

1. checks, before any work, that there is something to train and a graph to train it on;
2. measures the PTQ counterpart (:attr:`QuantSpec.ptq_spec`, same backend, same calibration images):
   ``ptq_top1``;
3. fine-tunes the FP32 model (the control, :mod:`.finetune`), or loads it (:mod:`.cache`): ``control_top1``;
4. prepares the QAT graph with PTQ's starting ranges, fine-tunes it with the same schedule, images and seed
   (or loads it), converts it to the backend's int8 model and measures it like any other spec (accuracy,
   latency interleaved with FP32, size): ``top1``;
5. ``recovered = (top1 - ptq_top1) / (control_top1 - ptq_top1)`` where the control beats PTQ, else empty
   with a note (PTQ lost nothing to win back);
6. QAT - PTQ paired on the same images (:func:`qat_vs_ptq`): the images QAT won and lost against PTQ and the
   95% interval of ``top1 - ptq_top1`` (:func:`qcore.metrics.stats.paired_delta`), the scale ``recovered`` is read at.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from qcore.backends import BackendUnavailable, resolve
from qcore.metrics.measure import accuracy, correct_counts, predict
from qcore.metrics.result import Result
from qcore.metrics.stats import paired_delta
from qcore.qat import cache
from qcore.qat.charts import qat_vs_ptq_text
from qcore.qat.finetune import Schedule, finetune, schedule_for, top1
from qcore.qat.flows import FLOWS, freeze_bn, freeze_observers
from qcore.quant.spec import QuantSpec

__all__ = ["recovered", "qat_vs_ptq", "measure_qat"]

ProgressFn = Callable[[int, int, str], None]


def recovered(qat: float | None, ptq: float | None, control: float | None) -> float | None:
    """``(qat - ptq) / (control - ptq)``: the share of the control's lead over PTQ that QAT won back (None when
    the control does not beat PTQ: nothing was lost). ``recovered(88, 84, 89)`` is 0.8."""
    if qat is None or ptq is None or control is None or control <= ptq:
        return None
    return (qat - ptq) / (control - ptq)


def qat_vs_ptq(r: Result, qat_logits, ptq_logits, labels) -> None:
    """QAT - PTQ on the same images into ``r``: images won (QAT right, PTQ wrong) and lost, and the paired 95%
    interval of the change in points: won 30, lost 10 of 2,000 images is +1.00 point, 95% +0.38 to +1.64."""
    c = correct_counts(qat_logits, labels, ptq_logits)  # the reference is PTQ: "gained" are the images QAT won
    _, lo, hi = paired_delta(c["both"], c["lost"], c["gained"], c["neither"])
    r.qat_images_won, r.qat_images_lost = c["gained"], c["lost"]
    r.qat_vs_ptq_lo, r.qat_vs_ptq_hi = 100.0 * lo, 100.0 * hi


def _bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _eval_identity(p) -> dict:
    c = p.config
    return {"eval_labels": cache.tensor_digest([p.labels]), "eval_limit": c.eval_limit, "seed": c.seed,
            "eval_batch": c.eval_batch_size}


def _control(p, s: Schedule, base: dict, progress, cancel) -> tuple[float, dict, bool]:
    """The FP32 model fine-tuned with schedule ``s``: its top-1, its record, and whether it came from the cache."""
    path = cache.cache_path(p.config.model, "control", {**base, "schedule": s.key()})
    with cache.locked(path):
        hit = cache.load(path)
        model = copy.deepcopy(p.loaded.model).cpu()
        if hit is not None:
            model.load_state_dict(hit[0])
            return top1(model, p.eval_batches), hit[1], True
        record = finetune(model, p.bundle.train, p.eval_batches, s, freeze_bn=_bn_eval, progress=progress,
                          cancel=cancel, what="FP32 control fine-tune")
        cache.save(path, model.state_dict(), record)
        return record["top1"][-1], record, False


def _qat(p, spec: QuantSpec, flow, s: Schedule, base: dict, progress, cancel) -> tuple[nn.Module, dict, bool]:
    """The trained QAT graph (before conversion), its record, and whether it came from the cache."""
    calib = cache.tensor_digest(p.calib)
    fields = {k: getattr(spec, k) for k in ("granularity", "calibration", "percentile", "scheme")}
    path = cache.cache_path(p.config.model, "qat", {**base, "schedule": s.key(), "spec": fields, "calib": calib,
                                                    **flow.key()})
    with cache.locked(path):
        hit = cache.load(path)
        if hit is not None:
            prepared = flow.prepare(p.loaded.model, p.example, None)
            prepared.load_state_dict(hit[0])
            return prepared, hit[1], True
        prepared = flow.prepare(p.loaded.model, p.example, p.calib)
        record = finetune(prepared, p.bundle.train, p.eval_batches, s, freeze_bn=freeze_bn,
                          freeze_observers=freeze_observers, progress=progress, cancel=cancel,
                          what="QAT fine-tune")
        cache.save(path, prepared.state_dict(), record)
        return prepared, record, False


def _stage(progress: ProgressFn | None, lo: float, hi: float) -> ProgressFn | None:
    """Progress of one stage mapped onto ``[lo, hi]`` of the whole QAT row (in thousandths)."""
    if progress is None:
        return None
    return lambda d, t, msg: progress(int(1000 * (lo + (hi - lo) * d / max(t, 1))), 1000, msg)


def measure_qat(p, spec: QuantSpec, *, base_result: Callable, measure_quantized: Callable,
                progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> Result:
    """Measure one QAT spec on the sweep's prepared data ``p`` (a :class:`qcore.runs.sweep.Prepared`); see the module
    docstring. A spec no backend can train or run here becomes a ``skipped`` row with the reason.

    ``base_result(p, spec)`` and ``measure_quantized(p, r, choice, q)`` are the sweep's own (passed in: the sweep
    imports this module, never the other way round), so a QAT row is timed and sized like every other row."""
    if spec.mode != "qat":
        raise ValueError(f"measure_qat measures mode='qat' specs, not mode={spec.mode!r}")
    r = base_result(p, spec)
    try:
        choice = resolve(spec, p.device, model=p.config.model, batch_size=p.config.batch_size)
    except BackendUnavailable as exc:
        r.status, r.error = "skipped", str(exc)
        return r
    if p.device != "cpu":
        r.status, r.error = "skipped", "QAT runs on the CPU here (the int8 kernels it converts to are CPU ones)"
        return r
    flow = FLOWS[choice.backend.name](spec)
    flow.prepare(p.loaded.model, p.example, None)  # a graph that cannot be traced fails here, before any work
    bundle = p.bundle
    s = schedule_for(p.config.model, p.config.dataset, spec, len(bundle.train), bundle.image_size)
    base = {"model": p.config.model, "dataset": p.config.dataset, "image_size": bundle.image_size,
            "weights": cache.tensor_digest(p.loaded.model.state_dict().values()), **_eval_identity(p)}

    report = _stage(progress, 0.0, 0.05)
    if report:
        report(0, 1, f"PTQ counterpart ({spec.ptq_spec.label()})")
    ptq = choice.backend.quantize(p.loaded.model, spec.ptq_spec, p.calib, p.example, p.device)
    ptq_logits, _ = predict(ptq, p.eval_batches, ptq.device)  # kept: QAT is paired with it image by image
    r.ptq_top1 = accuracy(ptq_logits, p.labels).top1
    del ptq

    control_top1, control_rec, control_cached = _control(p, s, base, _stage(progress, 0.05, 0.4), cancel)
    prepared, qat_rec, qat_cached = _qat(p, spec, flow, s, base, _stage(progress, 0.4, 0.95), cancel)
    if progress:
        progress(950, 1000, "converting to int8 and timing")
    converted = flow.convert(prepared)
    q = flow.quantized(converted, p.loaded.model,
                       f"QAT ({flow.backend}): {s.steps} steps ({s.epochs:g} epoch of {s.train_images} training "
                       f"images, batch {s.batch_size}), {s.optimizer} lr {s.lr:.2g} cosine to 0, BatchNorm "
                       f"frozen at {s.freeze_bn:g} and ranges at {s.freeze_observers:g} of the steps, seed "
                       f"{s.seed}; {flow.starting_ranges(sum(len(x) for x in p.calib))}")
    qat_logits, _ = predict(q, p.eval_batches, q.device)  # once: the row's accuracy and the pairing with PTQ
    r = measure_quantized(p, r, choice, q, logits=qat_logits)
    qat_vs_ptq(r, qat_logits, ptq_logits, p.labels)
    r.control_top1 = control_top1
    r.recovered = recovered(r.top1, r.ptq_top1, r.control_top1)
    r.finetune_seconds = qat_rec.get("seconds")
    r.qat_curve = {"qat": _curve(qat_rec), "control": _curve(control_rec), "steps": s.steps,
                   "eval_images": int(len(p.labels))}
    for what, hit, rec in (("QAT", qat_cached, qat_rec), ("control", control_cached, control_rec)):
        if hit:
            r.notes.append(f"{what} fine-tune loaded from the cache (trained in {rec.get('seconds')} s)")
    r.notes.append(f"FP32 control fine-tuned the same way: {control_top1:.2f}% top-1 (FP32 before it "
                   f"{accuracy(p.ref_logits, p.labels).top1:.2f}%); PTQ {r.ptq_top1:.2f}%")
    r.notes.append(qat_vs_ptq_text(r) + ", paired image by image")
    if r.recovered is None:
        r.notes.append("recovered is empty: the control does not beat PTQ, so PTQ lost nothing to win back")
    r.notes.append("finetune_seconds: training steps only, measured under whatever load the machine had")
    return r


def _curve(record: dict) -> dict:
    return {k: record.get(k) for k in ("step", "epoch", "train_loss", "top1", "seconds")}
