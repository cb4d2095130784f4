"""Ahead-of-time compiled programs, one per input shape, built through the build cache.

AOTInductor (``torch._inductor.aoti_compile_and_package``) turns an exported graph into a C++
package: Inductor's fused kernels and oneDNN calls driven by generated C++, with no Dynamo guard
check and no Python between kernels (what costs most at batch 1). ExecuTorch's XNNPACK programs
(:mod:`.xnnpack`) are built the same way. Such a program is specialised to the shapes it was
exported with, so :class:`PerShape` keeps one per input shape:

- the latency shape (the ``example`` a backend is given) gets its program from :meth:`PerShape.prepare`
  before the first timed call (a shape to be timed must be prepared: else it might run padded);
- any other input (the evaluation batches) gets one on first sight, and a smaller batch of the
  same image shape (the last evaluation batch) is padded with zeros up to a batch that has one,
  the padding rows' outputs dropped: no build for it. (A program with a dynamic batch dimension
  would serve both, but ExecuTorch plans its memory for a bounded batch and lowered mobilenet_v2
  with a wrong bound here, and a dynamic graph loses shape-specialised kernels.)

Each build goes through :class:`qcore.backends.buildcache.BuildCache`, so the second run of a spec loads its
programs instead of compiling them. The records of what was built or loaded (and what it cost) are
in ``PerShape.records``, which a backend hands over as ``Quantized.builds``.

Inductor's options (freezing above all) are passed to each build and apply for its length only: the
graph is exported before AOTInductor sees it, so nothing reads the process-wide flags. ``torch.compile``
is different: Dynamo reads ``torch._inductor.config.freezing`` itself while it traces, before the
options reach Inductor, and without it the frozen graph still takes the weights as inputs and oneDNN's
int8 weight prepacking fails (``UnsupportedOperatorException: onednn.qconv_prepack``).
:class:`CompiledWithFreezing` runs a ``torch.compile``'d callable with the flag on only while a call may
trace (the just-in-time engines of ``bench/peers.py``; no backend compiles that way any more).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from qcore.backends.buildcache import BuildCache, BuildRecord, digest, input_signature

__all__ = ["AOTI_OPTIONS", "RECIPE", "Compile", "PerShape", "export_for", "aoti_compiler", "compiled_fp32",
           "CompiledWithFreezing"]

# Inductor options of every AOTInductor build (passed to the call, never set process-wide). freezing:
# weights become constants, BatchNorm is folded, int8 weights are prepacked for oneDNN once.
AOTI_OPTIONS: dict[str, Any] = {"freezing": True}
# Bumped when what a build makes changes in a way its key cannot see (a new export or lowering recipe).
RECIPE = 1

Compile = Callable[[torch.Tensor], tuple[Callable[[torch.Tensor], torch.Tensor], BuildRecord]]


class PerShape:
    """Calls the program built for the input's shape; builds (or loads) it on first sight.

    ``compile(x)`` returns ``(program, record)`` for a program specialised to ``x``'s shape.
    ``memory_format``: inputs are converted to it before the call (4-D inputs only), so a program
    exported for channels-last images is always fed channels-last.

    >>> calls = []
    >>> runner = PerShape(lambda x: (lambda t: t * 2, calls.append(tuple(x.shape))))
    >>> runner(torch.ones(4, 3)).shape, runner(torch.ones(3, 3)).shape, calls  # 3 rows padded to 4
    (torch.Size([4, 3]), torch.Size([3, 3]), [(4, 3)])
    """

    def __init__(self, compile: Compile, memory_format: torch.memory_format | None = None) -> None:
        self.compile = compile
        self.memory_format = memory_format
        self.programs: dict[tuple, Callable] = {}  # input shape -> program
        self.records: list[BuildRecord] = []

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_format is not None and x.dim() == 4:
            return x.contiguous(memory_format=self.memory_format)
        return x.contiguous()

    def prepare(self, x: torch.Tensor) -> None:
        """Build (or load) the program for ``x``'s shape now, not at the first timed call."""
        x = self._fmt(x)
        if tuple(x.shape) not in self.programs:
            self._build(x)

    def _build(self, x: torch.Tensor) -> Callable:
        program, record = self.compile(x)
        if record is not None:
            self.records.append(record)
        self.programs[tuple(x.shape)] = program
        return program

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self._fmt(x)
        program = self.programs.get(tuple(x.shape))
        if program is not None:
            return program(x)
        n, tail = x.shape[0], tuple(x.shape[1:])
        larger = [s[0] for s in self.programs if s[1:] == tail and s[0] > n]
        if not larger:
            return self._build(x)(x)
        pad = x.new_zeros((min(larger) - n, *tail))
        return self.programs[(min(larger), *tail)](self._fmt(torch.cat([x, pad])))[:n]


def export_for(module: torch.nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``module`` at ``x``'s shape (non-strict: the module may already be an exported graph)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(module, (x,), strict=False)


def aoti_compiler(
    module: torch.nn.Module,
    what: str,
    cache: BuildCache | None = None,
    options: dict[str, Any] | None = None,
) -> Compile:
    """A ``compile`` for :class:`PerShape` that builds AOTInductor packages of ``module``.

    ``what`` is the digest of what is compiled (:func:`qcore.backends.buildcache.digest` of the quantized
    graph, or of the FP32 module): computed once by the caller, it keys every shape's package.
    """
    cache = cache or BuildCache()
    options = {**AOTI_OPTIONS, **(options or {})}

    def compile(x: torch.Tensor):
        from torch._inductor import aoti_compile_and_package, aoti_load_package

        def build(path: Path) -> dict:
            with torch.no_grad():
                # a copy: aoti_compile_and_package adds its own entries to the dict it is given, which would
                # change the key of every later shape
                aoti_compile_and_package(export_for(module, x), package_path=str(path), inductor_configs=dict(options))
            return {"unit": "package", "shape": list(x.shape)}

        parts = {"what": what, "input": input_signature(x), "options": options, "recipe": RECIPE}
        return cache.get_or_build("aoti", parts, build, lambda p: aoti_load_package(str(p)), suffix=".pt2")

    return compile


def compiled_fp32(model: torch.nn.Module, example: torch.Tensor, cache: BuildCache | None = None) -> PerShape:
    """The FP32 model compiled by AOTInductor with freezing for ``example``'s shape (built or loaded now).

    The fastest FP32 torch can run here is the reference INT8 speed-ups are also quoted against
    (``speedup_vs_best_fp32``); its build time is the FP32 row's ``build_seconds``.
    """
    model = model.eval()
    runner = PerShape(aoti_compiler(model, digest(model), cache), memory_format=torch.channels_last)
    runner.prepare(example)
    return runner


@contextmanager
def _freezing_while_tracing():
    """``torch._inductor.config.freezing`` on for the ``with`` block, then restored (see the module docstring)."""
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    inductor_config.freezing = True
    try:
        yield
    finally:
        inductor_config.freezing = before


class CompiledWithFreezing:
    """Calls a ``torch.compile``'d callable whose options include freezing. Its first call for each input
    shape and grad mode (what makes Dynamo trace and compile again) runs with freezing visible to Dynamo
    (:func:`_freezing_while_tracing`); the later calls, the timed ones, pay only a set lookup."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self._traced: set[tuple] = set()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), tuple(x.stride()), x.dtype, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        if key in self._traced:
            return self.compiled(x)
        with _freezing_while_tracing():
            out = self.compiled(x)
        self._traced.add(key)
        return out
