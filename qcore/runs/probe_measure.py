"""How ``auto``'s probe (:mod:`qcore.runs.auto_probe`) builds and times its candidates: :func:`measure_here` in
this process, or :func:`measure_apart` in processes of their own (the probe's way: an engine's thread pool cannot
slow the sweep that goes on in the sweep's process, a cancel stops a build halfway, and a backend that crashes its
process is recorded as failed instead of ending the sweep).

The candidates are timed in blocks (:func:`blocks`): the backends on torch's threads together, interleaved, then
each engine with its own thread pool alone. :func:`measure_apart` gives each block a process and builds the blocks
at the same time (at most one per CPU core, and as many as the memory available holds: :func:`parallel_builds`):
a build is mostly one core's work (ExecuTorch's lowering passes are Python, AOTInductor's is one compiler run), so
two builds side by side take about the time of the longer one: a first probe of mobilenet_v3_small at 224x224 on 2
cores took 51-55 s instead of 78-84 (docs/benchmarks.md). The timing is never side by side: each process, once
built, waits (idle, on its standard input) until the parent tells it to time, one block after another.

``python -m qcore.runs.probe_measure PAYLOAD NAMES`` builds the comma-separated ``NAMES`` from what
:func:`measure_apart` saved (the FP32 model, the spec, the calibration batches, the input, the seconds each, torch's
thread count), prints lines that start with :data:`TAG` (``building NAME``, ``built``, ``result {json}``; anything
else a library prints is passed over), and times after a ``time BEST`` line on its standard input (``BEST``: the
fastest p50 an earlier block measured, 0 for none, so a clearly slower candidate is cut short: :func:`_time`; an end
of file instead: it exits), prints its result, then waits, idle, for the runoff's ``again NAME SECONDS`` lines
(:meth:`_Children.runoff`: one slice of timing each, ``again [samples]`` back) and exits at the end of its input or
any other line, at once, without tearing torch down (1.7 s of a core). The parent says the progress and checks
``cancel()`` four times a second: a cancel kills every child
and nothing is recorded. A child that dies, or a probe that runs past :data:`TIMEOUT_S`, fails every backend
that child had not measured, with its exit status and the end of its error output as the reason.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from qcore.backends import get_backend, list_backends
from qcore.env.malloc import keep_freed_memory
from qcore.env.space import is_out_of_space
from qcore.metrics.measure import PROTOCOL, time_interleaved
from qcore.quant.spec import QuantSpec

__all__ = ["PHASE", "TAG", "TIMEOUT_S", "CUT_AFTER_S", "CUT_RATIO", "RUNOFF_TURNS", "RUNOFF_SLICE_S",
           "backend_table", "blocks", "memory_available", "parallel_builds", "measure_here", "measure_apart",
           "main"]  # fmt: skip

PHASE = "measuring which INT8 backend is fastest here"
TAG = "qcore-probe "
TIMEOUT_S = 1800.0  # first C++ builds of a large model at 224 px take minutes; past half an hour something hangs
# What one building child is assumed to need at its peak: torch and the compilers, plus the model's FP32 bytes many
# times over (its copies, the exported and quantized graphs, the lowering's fake tensors). Measured for resnet18 (47 MB
# of weights), peak RSS of a process that loaded the dataset and built: pt2e 1.28 GB, xnnpack 1.41 GB, of which 0.66
# GB is torch and qcore imported (about 15x the weights on top): these figures leave room above that. The blocks build
# side by side only where the memory available holds them all.
CHILD_BASE_BYTES = 1536 << 20
# A candidate clearly slower than the fastest after a second of timing is timed no further (:func:`_time`): on 2 cores
# this and the children's quick exit took mobilenet_v2's probe at batch 32 from 14.5 s of timing to 9.8 (fx at 72-81
# ms against pt2e's 52-55).
# Process to process the same backend's p50 moves by up to 1.3x at batch 1 (docs/benchmarks.md): a cut at 1.25x
# within one probe only stops what its own calls already rank last.
CUT_AFTER_S = 1.0
CUT_RATIO = 1.25
_WARM = replace(PROTOCOL, warmup=1, warmup_s=0.0)  # the rest of a timing that has just run: warm already
# The runoff (:meth:`_Children.runoff`): on a shared machine the speed changes from one few seconds to the next (1.3-
# 1.7x, docs/benchmarks.md, session 15), so two blocks timed one after another can swap places. The fastest and the
# fastest of another process, when within CUT_RATIO of it, are timed again in RUNOFF_TURNS turns of RUNOFF_SLICE_S
# each, alternating, and ranked on those calls alone.
RUNOFF_TURNS = 6
RUNOFF_SLICE_S = 0.25
_SLICE = replace(PROTOCOL, warmup=1, warmup_s=0.0, min_runs=2)
CHILD_MODEL_FACTOR = 40


def backend_table() -> dict:
    """Every registered backend by name (the built-in ones loaded)."""
    return {name: get_backend(name) for name in list_backends()}


def blocks(names: Sequence[str], table: dict) -> list[list[str]]:
    """The order the candidates are timed in: the backends on torch's threads in one block (first), then each
    backend with its own thread pool in a block of its own (so no idle pool of another engine sits beside torch's
    threads while they are timed). A name ``table`` does not know goes with torch's (its build names the error)."""
    own = [n for n in names if n in table and table[n].own_threads]
    return [b for b in [[n for n in names if n not in own]] + [[n] for n in own] if b]


def _build(table: dict, names: Sequence[str], model, spec, calib, example, device, starting: Callable[[str], None],
           cancel: Callable[[], bool]) -> tuple[dict, dict] | None:  # fmt: skip
    """``(built, failed)``: each backend of ``names`` quantized and run once (a program made on first sight is made
    here, where a failure is named), or the reason it could not be; None when ``cancel()`` said so."""
    x = example.to(device)
    calib = [b.to(device) for b in calib] if device != "cpu" else calib
    built, failed = {}, {}
    for name in names:
        if cancel():
            return None
        starting(name)
        try:
            q = table[name].quantize(model, spec, calib, example, device)
            with torch.inference_mode():
                q(x)
        except Exception as exc:  # a backend that cannot build is recorded as failed; the probe goes on
            if is_out_of_space(exc):
                raise
            failed[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
            continue
        built[name] = q
    return built, failed


def _time(built: dict, example: torch.Tensor, device: str, seconds: float, best_ms: float | None = None
          ) -> tuple[dict[str, float], list[str]]:  # fmt: skip
    """The p50 (ms) of each of ``built``, timed interleaved for ``seconds`` each, and the names cut short: after
    :data:`CUT_AFTER_S` seconds each, a backend whose p50 is over :data:`CUT_RATIO` times the fastest so far (in
    ``built``, or ``best_ms``, an earlier block's) is timed no further: it cannot be the pick, and its p50 stands on
    the calls it had."""
    x = example.to(device)
    fns = {n: (lambda q=q: q(x)) for n, q in built.items()}
    first = min(CUT_AFTER_S, seconds)
    lat = time_interleaved(fns, device=device, budget_s=first * len(fns))
    p50 = {n: lat[n].p50 for n in fns}
    best = min([*p50.values(), *([best_ms] if best_ms else [])])
    cut = [n for n in fns if p50[n] > CUT_RATIO * best]
    rest = {n: f for n, f in fns.items() if n not in cut}
    if rest and seconds > first:
        more = time_interleaved(rest, device=device, budget_s=(seconds - first) * len(rest), protocol=_WARM)
        for n in rest:
            p50[n] = statistics.median(lat[n].samples_ms + more[n].samples_ms)
    return p50, cut


def measure_here(model, spec: QuantSpec, calib, example: torch.Tensor, device: str, names: Sequence[str],
                 seconds: float, say: Callable[[str], None], cancel: Callable[[], bool]) -> dict | None:  # fmt: skip
    """Build and time ``names`` in this process, one block (:func:`blocks`) after another: ``{"p50": {name: ms},
    "failed": {name: reason}, "cut": [name, ...]}`` (``cut``: timed for :data:`CUT_AFTER_S` only, :func:`_time`),
    or None when ``cancel()`` said so between steps."""
    table = backend_table()
    p50, failed, cut, count = {}, {}, [], iter(range(1, len(names) + 1))
    for block in blocks(names, table):
        out = _build(table, block, model, spec, calib, example, device,
                     lambda n: say(f"{PHASE}: {n} {next(count)}/{len(names)}"), cancel)  # fmt: skip
        if out is None:
            return None
        built, fails = out
        failed.update(fails)
        if built:
            if cancel():
                return None
            say(f"{PHASE}: timing {', '.join(built)}")
            times, cuts = _time(built, example, device, seconds, min(p50.values(), default=None))
            p50.update(times)
            cut += cuts
        built.clear()
        gc.collect()
    return {"p50": p50, "failed": failed, "cut": cut, "runoff": []}


def measure_apart(model, spec: QuantSpec, calib, example: torch.Tensor, device: str, names: Sequence[str],
                  seconds: float, say: Callable[[str], None], cancel: Callable[[], bool]) -> dict | None:  # fmt: skip
    """:func:`measure_here` with a child process per block, built side by side and timed one after another, then
    the runoff of the fastest and the fastest of another process (:meth:`_Children.runoff`; ``runoff`` in the
    result names them): the same result, or None when cancelled."""
    groups = blocks(names, backend_table())
    with tempfile.TemporaryDirectory(prefix="qcore-probe-") as tmp:
        payload = Path(tmp) / "payload.pt"
        torch.save({"model": model, "spec": spec.to_dict(), "calib": list(calib), "example": example,
                    "device": device, "seconds": float(seconds), "threads": torch.get_num_threads()},
                   payload)  # fmt: skip
        size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        run = _Children(payload, groups, Path(tmp), say, cancel, len(names), size)
        try:
            return run.result()
        finally:
            run.stop()


def memory_available() -> int | None:
    """Bytes of memory the kernel says new work can use without swapping (``MemAvailable``), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def parallel_builds(blocks: int, model_bytes: int) -> int:
    """How many of ``blocks`` build at once: at most one per CPU core, and only as many as the memory available
    holds (:data:`CHILD_BASE_BYTES` + :data:`CHILD_MODEL_FACTOR` x the model's bytes each); one where either is
    unknown."""
    free, need = memory_available(), CHILD_BASE_BYTES + CHILD_MODEL_FACTOR * model_bytes
    fit = 1 if free is None else free // need
    return max(1, min(blocks, os.cpu_count() or 1, fit))


class _Children:
    """The probe's child processes, one per block: started (at most one per CPU core building at a time), followed
    line by line, told to time one after another, killed on a cancel, a timeout or the end."""

    def __init__(self, payload: Path, groups: list[list[str]], tmp: Path, say, cancel, total: int,
                 model_bytes: int) -> None:  # fmt: skip
        self.payload, self.groups, self.tmp, self.say, self.cancel = payload, groups, tmp, say, cancel
        self.total = total
        self.lines: queue.Queue = queue.Queue()
        self.procs: dict[int, subprocess.Popen] = {}
        self.state = dict.fromkeys(range(len(groups)), "waiting")  # building, built, timing, done
        self.results: dict[int, dict] = {}
        self.started, self.count = time.monotonic(), 0
        self.current: dict[int, str] = {}  # the backend each child is building
        self.parallel = parallel_builds(len(groups), model_bytes)

    def _command(self, i: int) -> list[str]:
        return [sys.executable, "-m", "qcore.runs.probe_measure", str(self.payload), ",".join(self.groups[i])]

    def _start(self, i: int) -> None:
        root = Path(__file__).resolve().parents[2]  # "-m qcore..." from here: this checkout's qcore
        with open(self.tmp / f"stderr{i}.txt", "wb") as err:
            proc = subprocess.Popen(self._command(i), cwd=str(root), stdout=subprocess.PIPE, stderr=err,
                                    stdin=subprocess.PIPE, text=True)  # fmt: skip
        self.procs[i], self.state[i] = proc, "building"

        def read() -> None:
            for line in proc.stdout:
                self.lines.put((i, line))
            self.lines.put((i, None))

        threading.Thread(target=read, name=f"qcore-probe-{proc.pid}", daemon=True).start()

    def _schedule(self) -> None:
        """Start waiting children while fewer than :attr:`parallel` build; once none builds, tell the first built
        one to time."""
        for i in sorted(self.state):
            if self.state[i] == "waiting" and list(self.state.values()).count("building") < self.parallel:
                self._start(i)
        states = set(self.state.values())
        if not states & {"waiting", "building", "timing"}:
            for i in sorted(self.state):
                if self.state[i] == "built":
                    self.state[i] = "timing"
                    self.say(f"{PHASE}: timing {', '.join(self.groups[i])}")
                    best = min((v for r in self.results.values() for v in r["p50"].values()), default=0.0)
                    try:
                        self.procs[i].stdin.write(f"time {best!r}\n")
                        self.procs[i].stdin.flush()
                    except OSError:  # it died after saying it was built: its end of file comes next
                        pass
                    break

    def _ended(self, i: int, why: str) -> None:
        """Child ``i`` ended without a result: its backends fail with ``why`` and the end of its error output."""
        tail = (self.tmp / f"stderr{i}.txt").read_text(errors="replace").strip().splitlines()[-3:]
        reason = f"the probe's process {why}" + (f": {' / '.join(tail)[-300:]}" if tail else "")
        self.results[i] = {"p50": {}, "failed": dict.fromkeys(self.groups[i], reason), "cut": []}
        self.state[i] = "done"

    def result(self) -> dict | None:
        while True:
            self._schedule()
            if all(s == "done" for s in self.state.values()):
                p50, failed, cut = {}, {}, []
                for i in sorted(self.results):
                    p50.update(self.results[i]["p50"])
                    failed.update(self.results[i]["failed"])
                    cut += self.results[i]["cut"]
                again = self.runoff(p50)
                if again is None:
                    return None
                return {"p50": {**p50, **again}, "failed": failed, "cut": cut, "runoff": sorted(again)}
            if self.cancel():
                return None
            if time.monotonic() - self.started > TIMEOUT_S:
                for i, s in self.state.items():
                    if s != "done":
                        self._ended(i, f"ran past {TIMEOUT_S / 60:.0f} min")
                continue
            try:
                i, line = self.lines.get(timeout=0.25)
            except queue.Empty:
                continue
            if self.state[i] == "done":
                continue
            if line is None:
                code = self.procs[i].wait()
                if i not in self.results:
                    self._ended(i, f"exited with status {code}")
                self.state[i] = "done"
            elif line.startswith(TAG + "building "):
                self.count, self.current[i] = self.count + 1, line[len(TAG) + 9 :].strip()
                now = [self.current[j] for j in sorted(self.current) if self.state[j] == "building"]
                what = f"{' and '.join(now)} side by side," if len(now) > 1 else self.current[i]
                self.say(f"{PHASE}: {what} {self.count}/{self.total}")
            elif line.startswith(TAG + "built"):
                self.state[i] = "built"
            elif line.startswith(TAG + "result "):  # it stays, idle, for the runoff
                self.results[i], self.state[i] = json.loads(line[len(TAG) + 7 :]), "done"

    def runoff(self, p50: dict[str, float]) -> dict[str, float] | None:
        """The fastest and the fastest of another child, if within :data:`CUT_RATIO` of it: timed again in turns (see
        :data:`RUNOFF_TURNS`), each child told ``again NAME SECONDS``; their p50s over those calls (``{}`` where
        there is no runoff, or a child did not answer; None on a cancel)."""
        owner = {n: i for i, r in self.results.items() for n in r["p50"]}
        ranked = sorted(p50, key=p50.get)
        top = ranked[:1] + [n for n in ranked if owner[n] != owner[ranked[0]]][:1]  # the fastest of another process
        if len(top) < 2 or p50[top[1]] > CUT_RATIO * p50[top[0]]:
            return {}
        self.say(f"{PHASE}: timing {top[0]} and {top[1]} again, in turns")
        samples: dict[str, list[float]] = {n: [] for n in top}
        for turn in range(RUNOFF_TURNS):
            for name in top if turn % 2 == 0 else top[::-1]:
                got = self._again(owner[name], name)
                if got is None or got is False:
                    return None if got is None else {}
                samples[name] += got
        return {n: statistics.median(v) for n, v in samples.items()}

    def _again(self, i: int, name: str) -> list[float] | bool | None:
        """Child ``i``'s samples of ``name`` for one slice; False if it died or fell silent, None on a cancel."""
        try:
            self.procs[i].stdin.write(f"again {name} {RUNOFF_SLICE_S!r}\n")
            self.procs[i].stdin.flush()
        except OSError:
            return False
        deadline = time.monotonic() + 60 + 10 * RUNOFF_SLICE_S
        while time.monotonic() < deadline:
            if self.cancel():
                return None
            try:
                j, line = self.lines.get(timeout=0.25)
            except queue.Empty:
                continue
            if j == i and line is None:
                return False
            if j == i and line.startswith(TAG + "again "):
                return json.loads(line[len(TAG) + 6 :])
        return False

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    path, names = sys.argv[1:] if argv is None else argv
    payload = torch.load(path, weights_only=False)  # written by measure_apart in its private temporary folder
    torch.set_num_threads(payload["threads"])
    keep_freed_memory()  # as the sweep that timed FP32 and will time the pick (qcore.env.malloc)
    device, example = payload["device"], payload["example"]
    built, failed = _build(backend_table(), names.split(","), payload["model"], QuantSpec.from_dict(payload["spec"]),
                           payload["calib"], example, device, lambda n: print(f"{TAG}building {n}", flush=True),
                           lambda: False)  # fmt: skip
    p50, cut = {}, []
    if built:
        print(f"{TAG}built", flush=True)
        word = sys.stdin.readline().split()
        if word[:1] != ["time"]:
            return 0  # the parent ended the probe
        p50, cut = _time(built, example, device, payload["seconds"], float(word[1]) if word[1:] else None)
    print(f"{TAG}result {json.dumps({'p50': p50, 'failed': failed, 'cut': cut})}", flush=True)
    x = example.to(device)
    for line in sys.stdin if built else ():  # the runoff's turns (_Children.runoff), until the parent ends it
        word = line.split()
        if word[:1] != ["again"] or word[1] not in built:
            break
        fn = lambda q=built[word[1]]: q(x)  # noqa: E731
        lat = time_interleaved({"v": fn}, device=device, budget_s=float(word[2]), protocol=_SLICE)["v"]
        print(f"{TAG}again {json.dumps(lat.samples_ms)}", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # at once: tearing down torch and the built programs took 1.7 s of a core, which the next block's timing waits on
    os._exit(code)
