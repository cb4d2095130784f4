"""What one layer's quantization does to the model's answers (a background job of kind ``learn-layer``).

The model is measured twice on the same seeded test images (the sweeps' evaluation subset): as it is
in FP32, and with only ``setting.layer`` fake-quantized as the Learn page shows it
(:func:`qcore.learn.setting.quantize_layer`: the same captured batches, the same ranges). The result
gives top-1 of both, the agreement of their top-1 predictions, how many images flip class (split into
those FP32 had right and now gets wrong, the reverse, and wrong both ways) and a few of the flipped
images with both predictions. Weights are measured with BatchNorm folded in both models when the
setting says so (then folding is not what changes an answer: only the quantization is).

Everything is simulated (fake-quantized in float): the numbers say what those integers would compute,
not how fast, and the result says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from qcore.learn import source as src
from qcore.learn.capture import capture_inputs
from qcore.learn.ranges import fit_calibrators
from qcore.learn.setting import SIMULATED, LayerSetting, quantize_layer
from qcore.metrics.measure import accuracy, predict, predicted_class

__all__ = ["EXAMPLES", "STEPS", "Cancelled", "measure", "run_job"]

EXAMPLES = 8  # flipped images kept in the result
STEPS = 4  # load, calibrate, FP32, quantized
ProgressFn = Callable[[int, int, str], None]


class Cancelled(Exception):
    """The job was cancelled between two steps."""


def _pick_examples(labels: torch.Tensor, ref: torch.Tensor, quant: torch.Tensor, test_index: list[int]) -> list[dict]:
    """Flipped images, those FP32 had right first (the damage), then the ones fixed, then wrong both ways."""
    flipped = (ref != quant).nonzero().reshape(-1).tolist()
    order = {"broke": 0, "fixed": 1, "other": 2}

    def what(i: int) -> str:
        return "broke" if ref[i] == labels[i] else ("fixed" if quant[i] == labels[i] else "other")

    chosen = sorted(flipped, key=lambda i: (order[what(i)], i))[:EXAMPLES]
    return [{"index": test_index[i], "label": int(labels[i]), "fp32": int(ref[i]), "quantized": int(quant[i]),
             "what": what(i)} for i in chosen]


def measure(setting: LayerSetting, progress: ProgressFn | None = None,
            cancel: Callable[[], bool] | None = None) -> dict:
    """Measure the model with only ``setting.layer`` quantized; the JSON-ready result."""
    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    start = time.perf_counter()

    def step(done: int, message: str) -> None:
        if cancel():
            raise Cancelled
        progress(done, STEPS, message)

    step(0, f"loading {setting.model} ({setting.weights}) and {setting.dataset}")
    loaded = src.load(setting.source)
    model, fold_note = loaded.model, ""
    captured = calibrators = None
    step(1, "calibrating" if setting.kind == "activations" else "quantizing the weights")
    if setting.kind == "weights" and setting.fold_bn:
        model, fold_note = src.fold_batchnorm(model)
    if setting.kind == "activations":
        captured = capture_inputs(model, setting.layer, src.calibration_batches(loaded))
        if setting.mode == "static" and setting.granularity == "per-tensor":
            calibrators = fit_calibrators(captured, setting.percentile)
    quantized, params = quantize_layer(model, setting, captured, calibrators)
    batches, test_index = src.evaluation_set(loaded, setting.eval_limit)
    step(2, f"FP32 on {len(test_index)} test images")
    ref_logits, labels = predict(model, batches)
    step(3, f"{setting.label()} on {len(test_index)} test images")
    logits, _ = predict(quantized, batches)
    acc = accuracy(logits, labels, ref_logits)
    ref, quant = predicted_class(ref_logits), predicted_class(logits)
    right_ref, right_q = ref == labels, quant == labels
    flipped = ref != quant
    progress(STEPS, STEPS, "finished")
    return {
        "setting": setting.to_dict(),
        "label": setting.label(),
        "simulated": SIMULATED,
        "weights_source": loaded.loaded.weights,
        "notes": [n for n in (fold_note,) if n],
        "params": params,
        "n": int(labels.numel()),
        "top1_fp32": 100.0 * float(right_ref.float().mean()),
        "top1": acc.top1,
        "top1_delta": acc.top1_delta,
        "agreement": acc.agreement,
        "logit_kl": acc.logit_kl,
        "flips": int(flipped.sum()),
        "broke": int((flipped & right_ref).sum()),
        "fixed": int((flipped & right_q).sum()),
        "examples": _pick_examples(labels, ref, quant, test_index),
        "classes": list(loaded.bundle.classes),
        "captured": captured.shape_text() if captured is not None else "",
        "seconds": time.perf_counter() - start,
    }


def run_job(store, job) -> dict | None:
    """The worker's runner for ``learn-layer`` jobs (see :data:`qcore.service.worker.JOB_RUNNERS`)."""
    setting = LayerSetting.from_dict(job.config)

    def progress(done: int, total: int, message: str) -> None:
        store.update_job(job.job_id, done=done, total=total, message=message)

    try:
        return measure(setting, progress, lambda: store.cancel_requested(job.job_id))
    except Cancelled:
        return None
