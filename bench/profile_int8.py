"""Where an engine's time goes: torch.profiler over N calls, the top ops by their share of self CPU time.

    .venv/bin/python bench/profile_int8.py --engine qcore-pt2e-int8+aoti+cl --model mobilenet_v2 \\
        --weights random --batch-size 1 --input-size 224 --calls 50 [--onednn-verbose]

The engine is built as bench/peers.py builds it (any of its engine names; same 256 Fashion-MNIST
calibration images), called a few times to warm up, then --calls times under torch.profiler. The
table lists the ops with the largest self CPU time (time in the op itself, not in what it calls),
each as a share of the total self time, and the shares summed by family (oneDNN int8
convolutions, Inductor's generated kernels, ...). For PT2E engines the generated C++ kernels get
profiling hooks (the ``kprof`` option) so they are named; the hooks cost a little, so compare
shares, not milliseconds, and never time on a busy machine.

--onednn-verbose also (logging costs time per primitive: take the op shares from a run without it)
has oneDNN log every primitive it runs during the profiled calls
(``torch.backends.mkldnn.verbose``) and sums their time by primitive kind and implementation: it
says, for example, which kernel ran the depthwise int8 convolutions (``brdgmm_dw:avx512_core_vnni``,
``jit_dw:avx2``, ``ref`` ...).

ExecuTorch engines (xnnpack-*) run inside the ExecuTorch runtime, which torch.profiler cannot see, nor ORT's;
the script profiles them all the same and says so. OpenVINO engines (ov-*) are compiled with the CPU plugin's
``PERF_COUNT`` on, and its own per-layer report of the last call is printed: time by layer type and kernel
(``exec_type``: ``brgconv_avx512_core_vnni_I8``, ``jit_avx512_dw_I8``, ...) and the slowest layers, the view to set
beside PT2E's op shares and oneDNN's log.

Run from a checkout with ``PYTHONPATH=.`` unless qcore is installed (``scripts/setup.sh`` installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

FAMILIES = (  # (family, pattern on the op name), first match wins
    ("oneDNN int8 conv", r"qconv"),
    ("oneDNN int8 linear", r"qlinear"),
    ("torch.ao quantized ops", r"^quantized::"),
    ("Inductor generated kernels", r"cpp_fused|^kernel|graph_"),
    ("(de)quantize", r"quantize"),
    ("FP32 conv / linear", r"conv|linear|addmm|mkldnn"),
    ("copies and layout", r"copy|contiguous|clone|empty|as_strided|to$|_to_copy"),
)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="qcore-pt2e-int8+aoti+cl", help="a bench/peers.py engine name")
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--weights", default="random", help="random | baseline | a checkpoint path")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=0, help="default: torch's")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-kprof", action="store_true", help="no profiling hooks in PT2E's generated kernels")
    ap.add_argument("--onednn-verbose", action="store_true", help="sum oneDNN's own per-primitive log")
    return ap.parse_args(argv)


@contextlib.contextmanager
def captured_fd1(path: Path):
    """C-level stdout (where oneDNN logs) into ``path`` while the block runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(path, "wb") as fh:
        os.dup2(fh.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def onednn_summary(log: str, calls: int) -> list[tuple[str, float, int]]:
    """``(kind impl, ms per call, primitives per call)`` from oneDNN's verbose exec lines, largest first."""
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for line in log.splitlines():
        f = line.split(",")
        if len(f) > 6 and f[0] == "onednn_verbose" and "exec" in f:
            i = f.index("exec")
            kind, impl = f[i + 2], f[i + 3]
            with contextlib.suppress(ValueError):
                total[f"{kind} {impl}"] += float(f[-1])
                count[f"{kind} {impl}"] += 1
    rows = [(k, v / calls, count[k] // calls) for k, v in total.items()]
    return sorted(rows, key=lambda r: -r[1])


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/peers.py's engines, beside it
    from _peers_engines import build

    from qcore import data
    from qcore.env.malloc import keep_freed_memory
    from qcore.nets import models, weights

    keep_freed_memory()  # as every qcore timing process (bench/peers.py's children too)
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = data.load_dataset("fashion-mnist")
    if args.weights == "random":
        torch.manual_seed(0)
        model = models.build_model(args.model, bundle.num_classes).eval()
    else:
        model = weights.load_model(args.model, bundle, args.weights).model.eval()
    calib_set, _ = data.split_calib_eval(bundle, 256, 1, 0)
    calib = [x for x, _ in data.batches(calib_set, 32)]
    engine = args.engine
    requests = ov_profiling() if engine.startswith("ov-") else []
    if engine.startswith("qcore-pt2e-int8+") and not args.no_kprof and "kprof" not in engine:
        engine += "+kprof"
    with contextlib.redirect_stdout(sys.stderr):
        eng = build(engine, model, calib, torch.get_num_threads())
    x = eng.prep(torch.randn(args.batch_size, 3, args.input_size, args.input_size))
    with torch.inference_mode():
        for _ in range(3):
            eng.fn(x)
        log = Path(tempfile.mkdtemp(prefix="qcore-profile-")) / "onednn.log"
        level = torch.backends.mkldnn.VERBOSE_ON if args.onednn_verbose else torch.backends.mkldnn.VERBOSE_OFF
        with captured_fd1(log), torch.backends.mkldnn.verbose(level), profile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(args.calls):
                eng.fn(x)
    events = [e for e in p.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    print(f"# {engine}, {args.model} ({args.weights}), batch {args.batch_size}, {args.input_size}x{args.input_size}, "
          f"{torch.get_num_threads()} threads, {args.calls} calls; self CPU time {total / 1e3 / args.calls:.2f} ms "
          f"per call; load average {os.getloadavg()[0]:.2f} (shares are indicative under load)")  # fmt: skip
    if engine.startswith("xnnpack") or engine.startswith(("ort-", "ov-")):
        print("# note: this engine runs outside torch; the profiler sees only its entry point")
    print(f"{'op':60s} {'calls':>6s} {'self ms/call':>12s} {'share':>6s}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"{e.key[:60]:60s} {e.count // args.calls:6d} {e.self_cpu_time_total / 1e3 / args.calls:12.3f} "
              f"{100 * e.self_cpu_time_total / total:5.1f}%")  # fmt: skip
    family: dict[str, float] = defaultdict(float)
    for e in events:
        name = next((f for f, pat in FAMILIES if re.search(pat, e.key)), "other")
        family[name] += e.self_cpu_time_total
    shares = sorted(family.items(), key=lambda kv: -kv[1])
    print("# by family: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in shares))
    if args.onednn_verbose:
        rows = onednn_summary(log.read_text(errors="replace"), args.calls)
        print(f"{'oneDNN primitive (kind implementation)':60s} {'per call':>8s} {'ms/call':>8s}")
        for k, ms, n in rows[: args.top]:
            print(f"{k[:60]:60s} {n:8d} {ms:8.3f}")
    if requests:
        print_ov_profile(requests, args.top)


def ov_profiling() -> list:
    """Turn on the OpenVINO CPU plugin's per-layer counters for the programs qcore compiles from now on; returns
    the list their infer requests are appended to."""
    from qcore.backends import openvino_backend as ovb

    requests, config, program = [], ovb._ov_config, ovb._OvModel._program
    ovb._ov_config = lambda threads=None: {**config(threads), "PERF_COUNT": "YES"}

    def recorded(self, shape):
        req = program(self, shape)
        if req not in requests:
            requests.append(req)
        return req

    ovb._OvModel._program = recorded
    return requests


def print_ov_profile(requests: list, top: int) -> None:
    """OpenVINO's own report of its last call: ms by layer type and kernel, and the slowest layers."""
    info = [i for i in requests[-1].get_profiling_info() if i.status.name == "EXECUTED"]
    ms = [(i, i.real_time.total_seconds() * 1e3) for i in info]
    total = sum(t for _, t in ms) or 1.0
    print(f"# OpenVINO PERF_COUNT, last call: {total:.2f} ms over {len(ms)} executed layers")
    by: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for i, t in ms:
        by[f"{i.node_type} {i.exec_type}"][0] += t
        by[f"{i.node_type} {i.exec_type}"][1] += 1
    print(f"{'layer type, kernel':60s} {'layers':>6s} {'ms':>8s} {'share':>6s}")
    for k, (t, n) in sorted(by.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{k[:60]:60s} {n:6d} {t:8.3f} {100 * t / total:5.1f}%")
    print(f"{'slowest layers':60s} {'':6s} {'ms':>8s}")
    for i, t in sorted(ms, key=lambda it: -it[1])[:top]:
        print(f"{(i.node_name + ' ' + i.exec_type)[:60]:60s} {'':6s} {t:8.3f}")


if __name__ == "__main__":
    main()
