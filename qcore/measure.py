"""Measurement: accuracy, latency and size. The only module that times anything.

Latency follows nanoGPT's ``bench.py`` habits: warm up, then time many single calls;
synchronize CUDA before reading the clock; interleave the FP32 baseline and the variant in
one process (A B A B ...) so that both see the same machine state; report median and p90.
A speed-up is the FP32 median over the variant median *from the same run*.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

__all__ = ["stopwatch", "predict", "Accuracy", "accuracy", "Latency", "time_interleaved", "size_bytes"]


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


@dataclass
class Accuracy:
    top1: float  # percent
    top5: float  # percent
    agreement: float = 100.0  # percent of images whose top-1 equals the reference's
    logit_kl: float = 0.0  # mean KL(softmax(reference) || softmax(variant)), nats
    top1_delta: float = 0.0  # percentage points vs the reference
    n: int = 0


def accuracy(logits: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor | None = None) -> Accuracy:
    """Top-1/top-5 in percent; against ``reference`` logits also agreement, KL and the top-1 change.

    >>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    >>> accuracy(logits, torch.tensor([0, 0])).top1
    50.0
    """
    n = labels.numel()
    k = min(5, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    top1 = 100.0 * (topk[:, 0] == labels).float().mean().item()
    top5 = 100.0 * (topk == labels[:, None]).any(1).float().mean().item()
    acc = Accuracy(top1=top1, top5=top5, n=n)
    if reference is not None:
        ref_top1 = reference.argmax(1)
        acc.agreement = 100.0 * (ref_top1 == topk[:, 0]).float().mean().item()
        p_log = torch.log_softmax(reference.double(), 1)
        q_log = torch.log_softmax(logits.double(), 1)
        acc.logit_kl = float((p_log.exp() * (p_log - q_log)).sum(1).mean())
        acc.top1_delta = top1 - 100.0 * (ref_top1 == labels).float().mean().item()
    return acc


# --- latency --------------------------------------------------------------------------------------


@dataclass
class Latency:
    samples_ms: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        s = sorted(self.samples_ms)
        return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    device: str = "cpu",
    warmup: int = 3,
    min_runs: int = 7,
    max_runs: int = 200,
    budget_s: float = 20.0,
) -> dict[str, Latency]:
    """Time each callable ``min_runs`` to ``max_runs`` times, alternating between them.

    Rounds go A, B, A, B, ... so slow drifts of the machine hit every callable alike. Stops
    after ``max_runs`` rounds, or once ``budget_s`` is spent and ``min_runs`` rounds are done.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
        _sync(device)
    out = {name: Latency() for name in fns}
    start = time.perf_counter()
    for i in range(max_runs):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            out[name].samples_ms.append((time.perf_counter() - t0) * 1000.0)
        if i + 1 >= min_runs and time.perf_counter() - start > budget_s:
            break
    return out


# --- size -----------------------------------------------------------------------------------------


def size_bytes(artifact: dict | bytes) -> int:
    """Bytes of the serialized deployable artifact (``qcore.artifact.to_bytes``: safetensors, no pickle)."""
    from .artifact import to_bytes

    return len(to_bytes(artifact))
