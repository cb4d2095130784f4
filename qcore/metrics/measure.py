"""Measurement: accuracy, latency and size. The only module that times anything.

Latency follows nanoGPT's ``bench.py`` habits: warm up, then time many single calls;
on a GPU, CUDA events around each call, read after a synchronize, and warm-up until the clock is steady;
interleave the FP32 baseline and the variant in one process so that both see the same machine state;
report median and p90.
A speed-up is the FP32 median over the variant median *from the same run*.

The protocol (:class:`TimingProtocol`, one table read by every timing) is built to give the same
figure twice: warm-up by time as well as by count, interleaved too (a model warmed alone, then timed
next to another, first pays for evicted caches, oneDNN primitives created for the other's shapes and
the allocator's new blocks); rounds alternate their order (A B, B A, ...) so that neither callable
always runs in the cache state the other leaves; Python's garbage collector is off while timing (a
collection inside one call is a 10-100x outlier, as in ``timeit``). The machine's load is read before
and after (:attr:`Latency.load`), so a figure taken while other work ran can be flagged
(:mod:`qcore.metrics.scale`).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

__all__ = ["stopwatch", "predict", "predicted_class", "ranked_classes", "Accuracy", "accuracy", "correct_counts",
           "Latency", "TimingProtocol", "PROTOCOL", "steady", "load_average", "time_interleaved", "size_bytes"]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...``; afterwards ``t[0]`` holds the seconds taken."""
    out = [0.0]
    start = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - start


# --- accuracy -------------------------------------------------------------------------------------


@torch.inference_mode()
def predict(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on CPU) and labels for every image of ``batches``."""
    logits, labels = [], []
    for x, y in batches:
        out = model(x.to(device))
        logits.append(out.float().cpu())
        labels.append(y.cpu())
    if not logits:
        raise ValueError("the evaluation set is empty; evaluate on at least one image")
    return torch.cat(logits), torch.cat(labels)


def predicted_class(logits: torch.Tensor) -> torch.Tensor:
    """The class each row of ``logits`` (images x classes) predicts: the highest logit, and among tied highest
    logits the **lowest class index**. The one rule for "the prediction" in qcore: top-1, top-5, agreement, the
    images lost and gained and both intervals of a row, the paired deltas of the layer pages and the accuracy
    during training all read it. Dequantized int8 logits tie often (a few hundred levels for 1000 classes), and
    ``topk``'s order among ties is not specified (on CPU it differs from argmax's about half the time).

    ``torch.argmax`` returns the first maximal index (documented, and on CPU and CUDA alike); a NaN counts as
    the maximum, as in ``torch.sort``, so :func:`ranked_classes` agrees on it too.

    >>> predicted_class(torch.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]))
    tensor([1, 0])
    """
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits of shape {tuple(logits.shape)} are not allowed; allowed: (images, classes >= 1)")
    return logits.argmax(1)


_RANK_CHUNK = 4096  # rows sorted at a time: the full index tensor of 50,000 x 1000 logits would be 400 MB


def ranked_classes(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest-scoring classes of each row, best first, ties in ascending class index: the order of
    :func:`predicted_class`, so ``ranked_classes(x, 5)[:, 0] == predicted_class(x)`` always, and a tie at the
    fifth place admits the lower class index. A stable descending sort (``topk`` leaves the order of ties open).

    >>> ranked_classes(torch.tensor([[1.0, 3.0, 3.0, 0.0]]), 3)
    tensor([[1, 2, 0]])
    """
    predicted_class(logits)  # the same refusal for a malformed tensor
    k = min(k, logits.shape[1])
    parts = [torch.sort(c, dim=1, descending=True, stable=True).indices[:, :k] for c in logits.split(_RANK_CHUNK)]
    return torch.cat(parts) if parts else torch.empty(0, k, dtype=torch.long)


@dataclass
class Accuracy:
    top1: float  # percent
    top5: float  # percent
    agreement: float = 100.0  # percent of images whose top-1 equals the reference's
    logit_kl: float = 0.0  # mean KL(softmax(reference) || softmax(variant)), nats
    top1_delta: float = 0.0  # percentage points vs the reference: 100 * (gained - lost) / n, exactly
    n: int = 0
    counts: dict[str, int] | None = None  # against a reference: correct_counts' both, lost, gained, neither


def accuracy(logits: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor | None = None) -> Accuracy:
    """Top-1/top-5 in percent; against ``reference`` logits also agreement, KL, the top-1 change and the paired
    counts. Every figure reads :func:`predicted_class` (top-5 :func:`ranked_classes`), and top-1, the change
    and agreement are ratios of whole counts: the change is ``100 * (gained - lost) / n`` to the last bit.

    >>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    >>> accuracy(logits, torch.tensor([0, 0])).top1
    50.0
    """
    n = labels.numel()
    if n == 0 or logits.shape[0] != n:
        raise ValueError(f"{logits.shape[0]} rows of logits for {n} labels; allowed: one row per label, at least one")
    pred = predicted_class(logits)
    right = int((pred == labels).sum())
    top5 = 100.0 * int((ranked_classes(logits, 5) == labels[:, None]).any(1).sum()) / n
    acc = Accuracy(top1=100.0 * right / n, top5=top5, n=n)
    if reference is not None:
        ref_pred = predicted_class(reference)
        acc.counts = _counts(pred == labels, ref_pred == labels)
        acc.agreement = 100.0 * int((ref_pred == pred).sum()) / n
        p_log = torch.log_softmax(reference.double(), 1)
        q_log = torch.log_softmax(logits.double(), 1)
        acc.logit_kl = float((p_log.exp() * (p_log - q_log)).sum(1).mean())
        acc.top1_delta = 100.0 * (acc.counts["gained"] - acc.counts["lost"]) / n
    return acc


def _counts(v: torch.Tensor, r: torch.Tensor) -> dict[str, int]:
    return {"both": int((v & r).sum()), "lost": int((r & ~v).sum()), "gained": int((v & ~r).sum()),
            "neither": int((~v & ~r).sum())}  # fmt: skip


def correct_counts(logits: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor) -> dict[str, int]:
    """Images by whether the reference and the variant got their top-1 (:func:`predicted_class`) right: the
    paired table that :func:`qcore.metrics.stats.paired_delta` turns into an interval for the top-1 change.

    >>> ref = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> var = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> correct_counts(var, torch.tensor([0, 0, 0]), ref)
    {'both': 1, 'lost': 1, 'gained': 0, 'neither': 1}
    """
    return _counts(predicted_class(logits) == labels, predicted_class(reference) == labels)


# --- latency --------------------------------------------------------------------------------------


@dataclass
class Latency:
    samples_ms: list[float] = field(default_factory=list)
    load: float | None = None  # the highest 1-minute load average seen before and after timing (None: unknown)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        s = sorted(self.samples_ms)
        return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]

    @property
    def spread(self) -> float:
        """p90 / p50: 1.05 on a quiet machine, 1.5 and more while other work competes for the cores."""
        return self.p90 / self.p50 if self.p50 > 0 else 1.0

    @property
    def interval(self) -> tuple[float, float]:
        """95% interval of the median (:func:`qcore.metrics.stats.median_interval`)."""
        from qcore.metrics.stats import median_interval

        return median_interval(self.samples_ms)


@dataclass(frozen=True)
class TimingProtocol:
    """How every latency is taken: one table, read by the sweep, the benches and the stability check.

    ``warmup`` calls and at least ``warmup_s`` seconds per callable, interleaved, before the clock runs
    (at least two rounds, and no longer than ``warmup_share`` of the timing budget, so a 1 s call is not
    warmed for 5 s and a test's tiny budget gets a tiny warm-up);
    then rounds, each timing every callable once, in alternating order when ``alternate``; between
    ``min_runs`` and ``max_runs`` rounds within ``budget_s``; the garbage collector off when ``gc_off``.
    """

    warmup: int = 5
    warmup_s: float = 0.5
    warmup_share: float = 0.2  # of the timing budget: the most warm-up may take once two rounds are done
    min_runs: int = 7  # the least a slow model gets (7 calls: the median's interval is their range)
    max_runs: int = 400
    alternate: bool = True
    gc_off: bool = True


PROTOCOL = TimingProtocol()


def load_average() -> float | None:
    """The 1-minute load average (runnable threads, averaged), or None where the OS does not say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed_ms(fn: Callable[[], object], device: str) -> float:
    """One call's milliseconds: CUDA events around it on a GPU (what the GPU spent, read after a synchronize),
    the wall clock on a CPU."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def steady(rounds_s: list[float], window: int = 3, tolerance: float = 0.03) -> bool:
    """Whether warm-up rounds have levelled off: the median of the last ``window`` within ``tolerance`` of the
    median of the ``window`` before (a GPU raises its clocks over the first calls; so do caches and allocators).

    >>> steady([5.0, 3.0, 1.01, 1.00, 1.00, 1.01, 1.00]), steady([4.0, 3.0, 2.5, 2.0, 1.6, 1.3])
    (True, False)
    """
    if len(rounds_s) < 2 * window:
        return False
    last, before = statistics.median(rounds_s[-window:]), statistics.median(rounds_s[-2 * window : -window])
    return abs(last - before) <= tolerance * before


@torch.inference_mode()
def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    device: str = "cpu",
    warmup: int | None = None,
    min_runs: int | None = None,
    max_runs: int | None = None,
    budget_s: float = 20.0,
    protocol: TimingProtocol | None = None,
) -> dict[str, Latency]:
    """Time each callable ``min_runs`` to ``max_runs`` times, in rounds that interleave them.

    Rounds go A B, B A, A B, ... (see :class:`TimingProtocol`; the arguments given here override its
    fields) so slow drifts of the machine and the cache state one callable leaves hit every callable
    alike. Stops after ``max_runs`` rounds, or once ``budget_s`` is spent and ``min_runs`` rounds are done.
    """
    p = protocol or PROTOCOL
    warmup = p.warmup if warmup is None else warmup
    min_runs = p.min_runs if min_runs is None else min_runs
    max_runs = p.max_runs if max_runs is None else max_runs
    names = list(fns)
    load_before = load_average()
    gc_was_on = gc.isenabled()
    if p.gc_off:
        gc.collect()
        gc.disable()
    try:
        start, done, rounds = time.perf_counter(), 0, []
        cap = p.warmup_share * budget_s  # a 1 s call is not warmed for 5 s
        while True:
            elapsed = time.perf_counter() - start
            wanted = done < warmup or elapsed < min(p.warmup_s, cap)  # enough calls, and for long enough
            wanted = wanted or (device == "cuda" and not steady(rounds))  # and on a GPU, until its clock is steady
            if done >= max(1, min(2, warmup)) and (not wanted or elapsed >= cap):
                break
            t0 = time.perf_counter()
            for name in names:
                fns[name]()
            _sync(device)
            rounds.append(time.perf_counter() - t0)
            done += 1
        out = {name: Latency() for name in fns}
        start = time.perf_counter()
        for i in range(max_runs):
            for name in reversed(names) if p.alternate and i % 2 else names:
                out[name].samples_ms.append(_timed_ms(fns[name], device))  # synchronizes first on a GPU
            if i + 1 >= min_runs and time.perf_counter() - start > budget_s:
                break
    finally:
        if p.gc_off and gc_was_on:
            gc.enable()
    loads = [v for v in (load_before, load_average()) if v is not None]
    for lat in out.values():
        lat.load = max(loads) if loads else None
    return out


# --- size -----------------------------------------------------------------------------------------


def size_bytes(artifact: dict | bytes) -> int:
    """Bytes of the serialized deployable artifact (``qcore.metrics.artifact.to_bytes``: safetensors, no pickle)."""
    from qcore.metrics.artifact import to_bytes

    return len(to_bytes(artifact))
