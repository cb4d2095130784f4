"""Plain-language explanations of a Result: what the numbers mean and why they came out so.

Torch-free (it only reads the fields of a :class:`~qcore.metrics.result.Result`), so the app can call it
on rows loaded from the run database. One sentence per idea, in the order a reader asks:
what ran (native or simulated arithmetic), what it did to accuracy, to speed, to size.

>>> from qcore.metrics.result import Result
>>> from qcore.quant.spec import QuantSpec
>>> r = Result(QuantSpec("int8"), "resnet18", "fashion-mnist", kernel="native", top1=90.0, top1_delta=-0.5,
...            agreement=98.0, speedup=2.0, speedup_vs_best_fp32=2.0, size_ratio=0.25)
>>> print(explain(r).split(":")[0])
INT8 here runs real int8 kernels
"""

from __future__ import annotations

from qcore.metrics.result import Result
from qcore.present.report import fmt
from qcore.quant.spec import LABELS

__all__ = ["SAME_SPEED", "explain"]

# Below this change in speed a timing is "about as fast": CPU noise on a shared machine is a few percent.
SAME_SPEED = 0.05


def _points(delta: float) -> str:
    word = "point" if abs(round(delta, 2)) == 1 else "points"
    return f"{abs(delta):.2f} {word}"


def _size_mb(n: int | None) -> str:
    return fmt(None if n is None else n / 1e6, ".1f", " MB")


def _speed_phrase(speedup: float | None) -> str:
    if speedup is None:
        return "its speed was not measured"
    if speedup > 1 + SAME_SPEED:
        return f"{speedup:.2f}x as fast as FP32"
    if speedup < 1 - SAME_SPEED:
        return f"slower than FP32 ({speedup:.2f}x the speed)"
    return f"about as fast as FP32 ({speedup:.2f}x)"


def _what_ran(r: Result) -> str:
    s, name = r.spec, LABELS.get(r.spec.precision, r.spec.precision.upper())
    smaller = r.size_ratio is not None and r.size_ratio < 0.95
    faster = r.speedup is not None and r.speedup > 1 + SAME_SPEED
    if s.precision in ("fp16", "bf16") and r.kernel == "simulated":
        return (
            f"{name} here is emulated: this CPU has no native {name} arithmetic, so every operation "
            f"converts to FP32 and back; the weights take half the memory, but the speed seen here is "
            f"not what a GPU or a CPU with {name} instructions would give"
        )
    if s.precision in ("fp16", "bf16"):
        return f"{name} here runs natively: weights and arithmetic are both {s.bits}-bit floats"
    if s.is_float:  # FP32 on another engine (ONNX Runtime, OpenVINO): a variant, not the reference
        return (f"{name} here runs on {r.engine or r.backend}: the same FP32 weights and arithmetic, that "
                "engine's kernels and graph optimizations instead of torch's")
    if s.mode == "weight-only" and r.kernel == "simulated":
        tail = "so it is smaller but not faster" if smaller and not faster else "so its speed says little"
        return (
            f"{name} here is simulated: the weights are stored in {s.bits} bits but computed in FP32 "
            f"(unpacked before each layer), {tail}"
        )
    if s.mode == "dynamic":
        layers = ""
        if r.quantized_layers is not None and r.total_layers:
            layers = f" (here {r.quantized_layers} of {r.total_layers} layers)"
        return (
            f"{name} dynamic mode only quantizes Linear layers{layers}: convolutions stay in FP32 and "
            "activations are quantized on the fly for each batch, so a convolutional network "
            "changes little"
        )
    if r.kernel == "simulated":
        return (
            f"{name} here is simulated: the arithmetic is done in floating point, so its latency is "
            "not that of real low-bit kernels"
        )
    engine = f" ({r.engine} engine)" if r.engine else ""
    return f"{name} here runs real int8 kernels{engine}: weights and activations are 8-bit integers"


def _algorithms(r: Result) -> str:
    """The post-training algorithms that ran before the backend quantized (qcore.ptq), and what they took."""
    s = r.spec
    done = [what for what, on in (("cross-layer equalization", s.equalize), ("bias correction", s.bias_correction),
                                  (f"AdaRound ({s.adaround_iters} steps a layer on {s.adaround_images} calibration "
                                   "images)", s.rounding == "adaround")) if on]  # fmt: skip
    if not done:
        return ""
    took = f", in {r.ptq_algorithm_seconds:.1f} s" if r.ptq_algorithm_seconds is not None else ""
    return f"Before quantizing, {', '.join(done[:-1]) + ' and ' if len(done) > 1 else ''}{done[-1]} ran{took}"


def _accuracy(r: Result) -> str:
    if r.top1_delta is None or r.top1 is None:
        return ""
    before = r.top1 - r.top1_delta
    if abs(r.top1_delta) < 0.005:
        change = f"Top-1 accuracy is unchanged at {r.top1:.2f}%"
    else:
        verb = "rose" if r.top1_delta > 0 else "fell"
        change = f"Top-1 accuracy {verb} by {_points(r.top1_delta)} ({before:.2f}% to {r.top1:.2f}%)"
    if (r.calib_draws or 1) > 1:
        change += f" on average over {r.calib_draws} calibration draws"
    change += _accuracy_scale(r)
    if r.agreement is not None:
        change += (
            f", and the model picks the same class as FP32 on {r.agreement:.1f}% of the images "
            "(agreement counts every changed answer, even where both are wrong)"
        )
    return change


def _accuracy_scale(r: Result) -> str:
    """`` (-1 of 2000 images; ... within what chance alone moves it)``: the change in images and whether its 95%
    paired interval includes zero; "" for rows without the counts.

    With calibration draws the interval is that of the draws' mean, spread between draws included
    (:func:`qcore.metrics.scale.set_draws_scale`), and the draws themselves are read too: when they fall on both
    sides of
    FP32 (or on it) the change is never called more than chance, whatever the interval of a row stored before
    intervals combined the draws says."""
    from qcore.metrics.scale import draw0_label, draws_deltas, images_text, interval_text

    if not images_text(r) or r.top1_delta_lo is None or (r.images_lost == r.images_gained == 0):
        return ""
    span = interval_text(r.top1_delta_lo, r.top1_delta_hi, "+.2f", " points")
    deltas = draws_deltas(r)
    reaches = bool(deltas) and min(deltas) <= 0 <= max(deltas)
    within = r.top1_delta_lo <= 0 <= r.top1_delta_hi or reaches
    verdict = "within what chance alone moves it" if within else "more than chance alone would move it"
    what = "the change"
    if deltas:
        what = f"the change{draw0_label(r)}" if draw0_label(r) else "the mean change, over the images and the draws,"
        side = (", on both sides of FP32" if min(deltas) < 0 < max(deltas) else
                ", one of them no change at all" if reaches else "")  # fmt: skip
        verdict += f": its {len(deltas)} draws changed it by {min(deltas):+.2f} to {max(deltas):+.2f} points{side}"
    return f" ({images_text(r)}; the 95% interval of {what} is {span}, {verdict})"


def _speed(r: Result) -> str:
    if r.speedup is None:
        return ""
    text = (
        f"It is {_speed_phrase(r.speedup)}: {fmt(r.latency_ms_p50, '.2f')} ms against "
        f"{fmt(r.fp32_latency_ms_p50, '.2f')} ms median per batch of {r.batch_size}, FP32 eager timed "
        "in turns with it in the same process"
    )
    best = (r.best_fp32 or "fp32 eager").replace("fp32", "FP32")
    if best != "FP32 eager" and r.speedup_vs_best_fp32 is not None:
        text += f"; against the fastest FP32 measured ({best}) it is {r.speedup_vs_best_fp32:.2f}x"
    return text


def _size(r: Result) -> str:
    if r.size_ratio is None:
        return ""
    full = r.size_bytes / r.size_ratio if r.size_bytes and r.size_ratio else None
    return (
        f"It takes {r.size_ratio:.3f}x the FP32 size ({_size_mb(int(full) if full else None)} to "
        f"{_size_mb(r.size_bytes)}, weights and quantization parameters as saved)"
    )


def explain(result: Result) -> str:
    """A few plain sentences on what ``result`` shows; safe on error, skipped and partial rows."""
    r = result
    if r.status == "error":
        return f"{r.label} failed: {r.error or 'no message'}. The other rows of the sweep are unaffected."
    if r.status == "skipped":
        return f"{r.label} was skipped: {r.error or 'no backend can run it here'}."
    if r.status == "cancelled":
        return f"{r.label} did not run: the sweep was cancelled first. Resume the job to measure it."
    if r.spec.is_reference:
        parts = [
            "This is the FP32 reference: every other row of its sweep is compared with it, on the same "
            f"images and in the same process. Top-1 accuracy is {fmt(r.top1, '.2f')}%"
        ]
        if r.latency_ms_p50 is not None:
            parts.append(f"the median latency is {r.latency_ms_p50:.2f} ms per batch of {r.batch_size} (eager)")
        if r.best_fp32 and r.best_fp32 != "fp32 eager" and r.speedup_vs_best_fp32:
            best = r.best_fp32.replace("fp32", "FP32")
            parts.append(
                f"{best} was faster ({1 / r.speedup_vs_best_fp32:.2f}x), so speed-ups are also quoted against it"
            )
        if r.size_bytes:
            parts.append(f"the weights take {_size_mb(r.size_bytes)}")
        return "; ".join(parts) + "."
    sentences = [_what_ran(r), _algorithms(r), _accuracy(r), _speed(r), _size(r)]
    return ". ".join(s for s in sentences if s) + "."
