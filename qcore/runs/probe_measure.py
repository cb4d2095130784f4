"""How ``auto``'s probe (:mod:`qcore.runs.auto_probe`) builds and times its candidates: :func:`measure_here` in
this process, or :func:`measure_apart` in a process of its own (the probe's way: an engine's thread pool cannot
slow the sweep that goes on in the sweep's process, a cancel stops a build halfway, and a backend that crashes the
process is recorded as failed instead of ending the sweep).

``python -m qcore.runs.probe_measure PAYLOAD`` runs :func:`measure_here` on what :func:`measure_apart` saved (the
FP32 model, the spec, the calibration batches, the input, the backends, the seconds each, torch's thread count)
and prints its progress and its result as lines that start with :data:`TAG` (anything else a library prints is
passed over). The parent says the progress and checks ``cancel()`` four times a second: a cancel kills the child
and nothing is recorded. A child that dies, or runs past :data:`TIMEOUT_S`, is killed and every backend it was
to measure counts as failed, with its exit status and the end of its error output as the reason.
"""

from __future__ import annotations

import gc
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from qcore.backends import get_backend, list_backends
from qcore.env.malloc import keep_freed_memory
from qcore.env.space import is_out_of_space
from qcore.metrics.measure import time_interleaved
from qcore.quant.spec import QuantSpec

__all__ = ["PHASE", "TAG", "TIMEOUT_S", "backend_table", "measure_here", "measure_apart", "main"]

PHASE = "measuring which INT8 backend is fastest here"
TAG = "qcore-probe "
TIMEOUT_S = 1800.0  # first C++ builds of a large model at 224 px take minutes; past half an hour something hangs


def backend_table() -> dict:
    """Every registered backend by name (the built-in ones loaded)."""
    return {name: get_backend(name) for name in list_backends()}


def measure_here(model, spec: QuantSpec, calib, example: torch.Tensor, device: str, names: Sequence[str],
                 seconds: float, say: Callable[[str], None], cancel: Callable[[], bool]) -> dict | None:  # fmt: skip
    """Build and time ``names`` in this process: ``{"p50": {name: ms}, "failed": {name: reason}}``, or None when
    ``cancel()`` said so between steps. The backends on torch's threads first, built and then timed interleaved;
    then each with its own thread pool, built and timed alone, after torch's (so no idle pool of another engine sits
    beside torch's threads while they are timed)."""
    table = backend_table()
    order = [n for n in names if not table[n].own_threads] + [n for n in names if table[n].own_threads]
    blocks = [[n for n in order if not table[n].own_threads]] + [[n] for n in order if table[n].own_threads]
    x = example.to(device)
    calib = [b.to(device) for b in calib] if device != "cpu" else calib
    p50, failed, i = {}, {}, 0
    for block in filter(None, blocks):
        built = {}
        for name in block:
            i += 1
            if cancel():
                return None
            say(f"{PHASE}: {name} {i}/{len(order)}")
            try:
                q = table[name].quantize(model, spec, calib, example, device)
                with torch.inference_mode():
                    q(x)  # a program made on first sight (a compiled backend) is made here, where a failure is named
            except Exception as exc:  # a backend that cannot build is recorded as failed; the probe goes on
                if is_out_of_space(exc):
                    raise
                failed[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            built[name] = q
        if built:
            if cancel():
                return None
            say(f"{PHASE}: timing {', '.join(built)}")
            lat = time_interleaved({n: (lambda q=q: q(x)) for n, q in built.items()}, device=device,
                                   budget_s=seconds * len(built))  # fmt: skip
            p50.update({n: lat[n].p50 for n in built})
        built.clear()
        gc.collect()
    return {"p50": p50, "failed": failed}


def measure_apart(model, spec: QuantSpec, calib, example: torch.Tensor, device: str, names: Sequence[str],
                  seconds: float, say: Callable[[str], None], cancel: Callable[[], bool]) -> dict | None:  # fmt: skip
    """:func:`measure_here` in a child process: the same result, or None when cancelled."""
    with tempfile.TemporaryDirectory(prefix="qcore-probe-") as tmp:
        payload, errors = Path(tmp) / "payload.pt", Path(tmp) / "stderr.txt"
        torch.save({"model": model, "spec": spec.to_dict(), "calib": list(calib), "example": example,
                    "device": device, "names": list(names), "seconds": float(seconds),
                    "threads": torch.get_num_threads()}, payload)  # fmt: skip
        command = [sys.executable, "-m", "qcore.runs.probe_measure", str(payload)]
        root = Path(__file__).resolve().parents[2]  # "-m qcore..." from here: this checkout's qcore
        with open(errors, "wb") as err:
            proc = subprocess.Popen(command, cwd=str(root), stdout=subprocess.PIPE, stderr=err,
                                    stdin=subprocess.DEVNULL, text=True)  # fmt: skip
            state, result = _follow(proc, say, cancel)
        if state == "cancelled":
            return None
        if state == "ok" and isinstance(result, dict):
            return result
        why = f"ran past {TIMEOUT_S / 60:.0f} min" if state == "timeout" else f"exited with status {proc.returncode}"
        tail = errors.read_text(errors="replace").strip().splitlines()[-3:]
        reason = f"the probe's process {why}" + (f": {' / '.join(tail)[-300:]}" if tail else "")
        return {"p50": {}, "failed": dict.fromkeys(names, reason)}


def _follow(proc: subprocess.Popen, say, cancel) -> tuple[str, dict | None]:
    """Read the child's lines until it ends: ``("ok", result)``, or ``"died"``, ``"timeout"``, ``"cancelled"``
    (the child killed)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name=f"qcore-probe-{proc.pid}", daemon=True).start()
    result, started = None, time.monotonic()
    try:
        while True:
            if cancel():
                return "cancelled", None
            if time.monotonic() - started > TIMEOUT_S:
                return "timeout", None
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                continue
            if line is None:
                return ("ok" if proc.wait() == 0 and result is not None else "died"), result
            if line.startswith(TAG + "say "):
                say(line[len(TAG) + 4 :].rstrip("\n"))
            elif line.startswith(TAG + "result "):
                result = json.loads(line[len(TAG) + 7 :])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    (path,) = sys.argv[1:] if argv is None else argv
    payload = torch.load(path, weights_only=False)  # written by measure_apart in its private temporary folder
    torch.set_num_threads(payload["threads"])
    keep_freed_memory()  # as the sweep that timed FP32 and will time the pick (qcore.env.malloc)
    out = measure_here(payload["model"], QuantSpec.from_dict(payload["spec"]), payload["calib"], payload["example"],
                       payload["device"], payload["names"], payload["seconds"],
                       lambda m: print(f"{TAG}say {m}", flush=True), lambda: False)  # fmt: skip
    print(f"{TAG}result {json.dumps(out)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
