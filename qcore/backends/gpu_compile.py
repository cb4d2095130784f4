"""How a GPU user runs a model fast, for the references GPU rows are measured against: TF32 tensor cores and
``torch.compile``.

- :func:`fp32_variants`: the FP32 baseline's extra candidates on a GPU (beside eager and channels-last):
  ``fp32 tf32`` (matmuls and convolutions on TF32 tensor cores, where the GPU has them: 8.0 and newer) and
  ``fp32 compiled`` (``torch.compile`` in :data:`MODE`, TF32 on). The fastest of all is ``best_fp32``, so a GPU
  row's ``speedup_vs_best_fp32`` is against the best FP32 a GPU user would run, not eager FP32.
- :func:`compiled`: torchao's quantized model compiled the same way (its INT8/INT4 tensor subclasses are meant for
  ``torch.compile``: run eagerly they quantize activations op by op). ``QCORE_GPU_EAGER=1`` keeps it eager; the row's
  notes and engine say which was timed.

The first call compiles (tens of seconds); :func:`compiled` makes it before the clock runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch

__all__ = ["MODE", "EAGER_ENV", "tf32", "fp32_variants", "compiled"]

MODE = "max-autotune-no-cudagraphs"  # Inductor's tuned kernels; CUDA graphs off so each call is a real launch
EAGER_ENV = "QCORE_GPU_EAGER"


@contextlib.contextmanager
def tf32() -> Iterator[None]:
    """Matmuls and cuDNN convolutions may use TF32 tensor cores inside the block (restored after)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _with_tf32(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def call(x: torch.Tensor) -> torch.Tensor:
        with tf32():
            return fn(x)

    return call


def fp32_variants(model: torch.nn.Module, x: torch.Tensor, notes: list[str]) -> dict[str, Callable[[], object]]:
    """``{"fp32 tf32": ..., "fp32 compiled": ...}`` for the FP32 baseline on a GPU (compiled now, before timing);
    a model ``torch.compile`` cannot compile keeps the others, and ``notes`` says why."""
    eager_tf32 = _with_tf32(model)
    out = {"fp32 tf32": lambda: eager_tf32(x)}
    try:
        program = _with_tf32(torch.compile(model, mode=MODE))
        with torch.no_grad():
            program(x)
    except Exception as exc:  # the eager baselines still stand
        notes.append(f"FP32 compiled (torch.compile) not measured: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        out["fp32 compiled"] = lambda: program(x)
        notes.append(f"FP32 compiled with torch.compile(mode={MODE!r}), TF32 on")
    return out


def compiled(model: torch.nn.Module, example: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """``(callable, how)``: ``model`` compiled with ``torch.compile`` (compiled now, on ``example``), or the model
    itself where :data:`EAGER_ENV` asks for eager; ``how`` is what the row's notes say was timed."""
    if os.environ.get(EAGER_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return model, f"timed eagerly ({EAGER_ENV}=1): torchao's kernels are meant for torch.compile"
    program = torch.compile(model, mode=MODE)
    with torch.no_grad():
        program(example)
    return program, f"timed compiled: torch.compile(mode={MODE!r}) (set {EAGER_ENV}=1 to time it eagerly)"
