"""Side-by-side: torch FP32 / qcore's torch INT8 paths vs ONNX Runtime and OpenVINO, each engine in its own process.

    .venv/bin/python bench/peers.py --model resnet18 --batch-size 1,32 --input-size 224 --out peers.csv

The parent prepares what every engine shares, once, in a temporary work folder: the FP32
weights, the calibration images (Fashion-MNIST, 32x32, --calib-size), the evaluation
images with labels (--eval-limit) and the FP32 reference logits. Then it runs one child
process per engine (``peers.py --child ENGINE --work DIR``): build, quantize on the same
calibration images, top-1 and agreement with FP32 on the evaluation images (at 32x32),
latency at each batch size at --input-size x --input-size (warm-up, --rounds rounds of at
least --runs calls each, p50/p90 over all calls). Engines never share a process: their
thread pools would disturb each other. Every engine gets --threads threads.

Run from a checkout with ``PYTHONPATH=.`` unless qcore is installed (``scripts/setup.sh`` installs it).

Engines (--engines, comma-separated; default all):
  torch-fp32-eager, torch-fp32-channels-last, torch-fp32-compile    FP32 references (Inductor, freezing)
  qcore-fx-int8, qcore-fx-int8-channels-last                        qcore backend "fx" (torch.ao, x86)
  qcore-pt2e-int8                                                   qcore backend "pt2e" as it is
  qcore-pt2e-int8+OPT[+OPT...]   the same PT2E recipe, compiled per input shape (dynamic=False), with
                                 OPT in: cpp (cpp_wrapper), cl (channels-last input), autotune
                                 (mode="max-autotune"), dyn (dynamic shapes, as a sweep compiles),
                                 aoti (AOTInductor: a C++ package per input shape, freezing on),
                                 noguard (no Dynamo guards on module attributes),
                                 useaoti (torch.compile(options={"use_aoti": True}))
  ort-fp32, ort-int8-minmax, ort-int8-entropy, ort-int8-percentile  qcore backend "ort" (QDQ, per-channel)
  ov-fp32, ov-int8                                                  qcore backend "openvino" (NNCF)

Output: one table (latency p50/p90, speed-up over FP32 eager and over the fastest FP32, ratio to
the fastest peer INT8, size, top-1, agreement), a CSV (--out), then one line per batch size
``batch B: ratio_to_best_peer_int8=<x> ...`` and, last, ``ratio_to_best_peer_int8=<x>``: the
fastest qcore torch INT8 engine's p50 over the fastest of the ORT and OpenVINO INT8 engines,
the worst (largest) over the batch sizes given.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from qcore.measure import accuracy, size_bytes, stopwatch, time_interleaved

FP32_ENGINES = ("torch-fp32-eager", "torch-fp32-channels-last", "torch-fp32-compile", "ort-fp32", "ov-fp32")
PEER_INT8 = ("ort-int8-minmax", "ort-int8-entropy", "ort-int8-percentile", "ov-int8")
TORCH_INT8 = (
    "qcore-fx-int8",
    "qcore-fx-int8-channels-last",
    "qcore-pt2e-int8",
    "qcore-pt2e-int8+static",
    "qcore-pt2e-int8+cpp+noguard",
    "qcore-pt2e-int8+aoti",
    "qcore-pt2e-int8+aoti+cl",
)
DEFAULT_ENGINES = FP32_ENGINES[:3] + TORCH_INT8 + FP32_ENGINES[3:4] + PEER_INT8[:3] + FP32_ENGINES[4:] + PEER_INT8[3:]
PT2E_OPTS = {"static", "cpp", "cl", "autotune", "dyn", "aoti", "noguard", "useaoti"}


def is_torch_int8(engine: str) -> bool:
    return engine.startswith("qcore-")


def is_peer_int8(engine: str) -> bool:
    return engine in PEER_INT8


# --- the child: one engine ------------------------------------------------------------------------


def _int8_spec(backend: str, calibration: str = "minmax"):
    from qcore.spec import QuantSpec

    return QuantSpec("int8", granularity="per-channel", calibration=calibration, backend=backend)


def _pt2e(model, calib, opts: set[str]):
    """qcore's PT2E graph (its quantizer and calibration: qcore.backends.pt2e_int8.build_pt2e), compiled the
    way ``opts`` says; freezing always, passed as an option (and seen by Dynamo while it traces)."""
    from qcore.backends.pt2e_int8 import CompiledWithFreezing, build_pt2e

    graph = build_pt2e(model, _int8_spec("pt2e"), calib, calib[0][:2])
    if "aoti" in opts:
        return _AotiPerShape(graph.converted), graph.artifact
    options = {"freezing": True, "cpp_wrapper": "cpp" in opts, "max_autotune": "autotune" in opts}
    if "noguard" in opts:  # no guards on the module's attributes: its frozen weights never change
        options["guard_filter_fn"] = torch.compiler.skip_guard_on_all_nn_modules_unsafe
    if "useaoti" in opts:  # torch.compile with AOTInductor as its backend (Dynamo still in front)
        options["use_aoti"] = True
    compiled = torch.compile(graph.converted, dynamic=None if "dyn" in opts else False, options=options)
    return CompiledWithFreezing(compiled), graph.artifact


class _AotiPerShape:
    """AOTInductor: one compiled C++ package (freezing on) per input shape, loaded and called from Python."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        self.gm, self.tmp, self.runners = gm, tempfile.mkdtemp(prefix="qcore-aoti-"), {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), tuple(x.stride()))
        if key not in self.runners:
            from torch._inductor import aoti_compile_and_package, aoti_load_package

            ep = torch.export.export(self.gm, (x,), strict=False)
            path = os.path.join(self.tmp, f"m{len(self.runners)}.pt2")
            self.runners[key] = aoti_load_package(
                aoti_compile_and_package(ep, package_path=path, inductor_configs={"freezing": True})
            )
        return self.runners[key](x)


def build(engine: str, model, calib, threads: int):
    """(callable on a torch batch, artifact for size, input memory format, notes) for ``engine``."""
    from qcore.backends import get_backend

    cl = torch.channels_last
    example = calib[0][:1]
    if engine == "torch-fp32-eager":
        return model, model.state_dict(), None, []
    if engine == "torch-fp32-channels-last":
        return model.to(memory_format=cl), model.state_dict(), cl, []
    if engine == "torch-fp32-compile":
        from qcore.backends.pt2e_int8 import CompiledWithFreezing

        fn = CompiledWithFreezing(torch.compile(model, dynamic=False, options={"freezing": True}))
        return fn, model.state_dict(), None, ["Inductor, freezing, per shape"]
    if engine.startswith("qcore-fx-int8"):
        q = get_backend("fx").quantize(model, _int8_spec("fx"), calib, example, "cpu")
        return q, q.artifact, (cl if engine.endswith("channels-last") else None), q.notes
    if engine == "qcore-pt2e-int8":
        q = get_backend("pt2e").quantize(model, _int8_spec("pt2e"), calib, example, "cpu")
        return q, q.artifact, None, q.notes
    if engine.startswith("qcore-pt2e-int8+"):
        opts = set(engine.split("+")[1:])
        if not opts <= PT2E_OPTS:
            raise ValueError(f"unknown PT2E option(s) {sorted(opts - PT2E_OPTS)}; allowed: {sorted(PT2E_OPTS)}")
        fn, artifact = _pt2e(model, calib, opts)
        return fn, artifact, (cl if "cl" in opts else None), [f"PT2E, options: {'+'.join(sorted(opts))}"]
    if engine.startswith("ort-"):
        from qcore.backends import ort
        from qcore.spec import QuantSpec

        spec = QuantSpec("fp32", backend="ort") if engine == "ort-fp32" else _int8_spec("ort", engine.split("-")[-1])
        q = ort.OrtBackend().quantize(model, spec, calib, example, "cpu")
        # Alone in its process, ORT may spin its workers (its default and its fastest).
        return ort.OrtModel(q.artifact, threads, spinning=True), q.artifact, None, q.notes[:1] + ["spinning on"]
    if engine.startswith("ov-"):
        from qcore.backends import openvino_backend
        from qcore.spec import QuantSpec

        spec = QuantSpec("fp32", backend="openvino") if engine == "ov-fp32" else _int8_spec("openvino")
        q = openvino_backend.OpenVinoBackend().quantize(model, spec, calib, example, "cpu")
        return q.model, q.artifact, None, q.notes
    raise ValueError(f"unknown engine {engine!r}; see --help for the engines")


def run_child(args) -> None:
    from qcore import models

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    inp = torch.load(work / "inputs.pt", weights_only=True)
    model = models.build_model(inp["model"], inp["num_classes"]).eval()
    model.load_state_dict(inp["state_dict"])
    calib = list(inp["calib"].split(32))
    out = {"engine": args.child, "threads": torch.get_num_threads(), "latency": {}}
    try:
        with stopwatch() as t_build, contextlib.redirect_stdout(io.StringIO()):
            fn, artifact, fmt, notes = build(args.child, model, calib, args.threads)
        out.update(build_s=t_build[0], size_bytes=size_bytes(artifact), notes=notes)
        with torch.inference_mode(), stopwatch() as t_eval:
            logits = torch.cat(
                [fn(x if fmt is None else x.contiguous(memory_format=fmt)).float() for x in inp["eval_x"].split(250)]
            )
        acc = accuracy(logits, inp["eval_y"], inp["ref_logits"])
        out.update(top1=acc.top1, agreement=acc.agreement, top1_delta=acc.top1_delta, eval_s=t_eval[0])
        for bs in args.batch_sizes:
            g = torch.Generator().manual_seed(bs)
            x = torch.randn(bs, 3, args.input_size, args.input_size, generator=g)
            x = x if fmt is None else x.contiguous(memory_format=fmt)
            with torch.inference_mode(), stopwatch() as t_first:
                fn(x)  # compiles, for the engines that compile per shape
            samples, rounds = [], []
            call = lambda x=x: fn(x)
            for _ in range(args.rounds):
                lat = time_interleaved(
                    {"v": call}, warmup=2, min_runs=args.runs, max_runs=100_000, budget_s=args.round_budget
                )["v"]
                samples += lat.samples_ms
                rounds.append(lat.p50)
            out["latency"][str(bs)] = {"samples_ms": samples, "round_p50": rounds, "first_call_s": t_first[0]}
    except Exception as exc:  # one engine's failure is a row, not the end of the benchmark
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    (work / f"{args.child}.json").write_text(json.dumps(out))


# --- the parent: shared inputs, one child per engine, the table ------------------------------------


def prepare_inputs(args, work: Path) -> dict:
    from qcore import data, models, weights

    bundle = data.load_dataset("fashion-mnist")
    notes = []
    if args.weights == "random":
        torch.manual_seed(0)
        model = models.build_model(args.model, bundle.num_classes).eval()
        source = "random-init (latency only: top-1 and agreement mean nothing)"
    else:
        loaded = weights.load_model(args.model, bundle, args.weights)
        model, source, notes = loaded.model, loaded.weights, loaded.notes
    calib_set, eval_set = data.split_calib_eval(bundle, args.calib_size, args.eval_limit, 0)
    calib = torch.cat([x for x, _ in data.batches(calib_set, 256)])
    ev = list(data.batches(eval_set, 250))
    eval_x, eval_y = torch.cat([x for x, _ in ev]), torch.cat([y for _, y in ev])
    with torch.inference_mode():
        ref = torch.cat([model(x).float() for x in eval_x.split(250)])
    torch.save({"model": args.model, "num_classes": bundle.num_classes, "state_dict": model.state_dict(),
                "calib": calib, "eval_x": eval_x, "eval_y": eval_y, "ref_logits": ref}, work / "inputs.pt")
    return {"weights": source, "notes": notes, "calib": len(calib), "eval": len(eval_x),
            "fp32_top1": accuracy(ref, eval_y).top1}


def run_engine(engine: str, args, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--work", str(work), "--batch-size",
           ",".join(map(str, args.batch_sizes)), "--input-size", str(args.input_size), "--threads", str(args.threads),
           "--rounds", str(args.rounds), "--runs", str(args.runs), "--round-budget", str(args.round_budget)]
    path = work / f"{engine}.json"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.engine_timeout)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "error": f"timed out after {args.engine_timeout} s", "latency": {}}
    if not path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"engine": engine, "error": f"child exited {proc.returncode}: {tail[0][:300]}", "latency": {}}
    return json.loads(path.read_text())


def _p(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else math.nan


def summarize(results: list[dict], batch_sizes: list[int]) -> tuple[list[dict], dict[int, dict]]:
    rows, best = [], {}
    for bs in batch_sizes:
        lat = {r["engine"]: r["latency"][str(bs)]["samples_ms"] for r in results if str(bs) in r["latency"]}
        p50 = {e: _p(s, 0.5) for e, s in lat.items()}
        eager = p50.get("torch-fp32-eager", math.nan)
        fp32 = {e: v for e, v in p50.items() if e in FP32_ENGINES}
        mine = {e: v for e, v in p50.items() if is_torch_int8(e)}
        peers = {e: v for e, v in p50.items() if is_peer_int8(e)}
        best_fp32 = min(fp32, key=fp32.get) if fp32 else None
        best_peer = min(peers, key=peers.get) if peers else None
        best_mine = min(mine, key=mine.get) if mine else None
        best[bs] = {"fp32": best_fp32, "peer": best_peer, "mine": best_mine,
                    "ratio": mine[best_mine] / peers[best_peer] if best_mine and best_peer else math.nan}
        for r in results:
            e, s = r["engine"], lat.get(r["engine"])
            v = p50.get(e, math.nan)
            rows.append(
                {
                    "model": r.get("model_name", ""),
                    "engine": e,
                    "batch_size": bs,
                    "threads": r.get("threads"),
                    "p50_ms": v,
                    "p90_ms": _p(s or [], 0.9),
                    "runs": len(s or []),
                    "round_p50_ms": " ".join(f"{x:.2f}" for x in r["latency"].get(str(bs), {}).get("round_p50", [])),
                    "speedup_vs_eager": eager / v if s else math.nan,
                    "speedup_vs_best_fp32": fp32[best_fp32] / v if s and best_fp32 else math.nan,
                    "ratio_to_best_peer_int8": v / peers[best_peer] if s and best_peer else math.nan,
                    "size_mb": r.get("size_bytes", math.nan) / 1e6,
                    "top1": r.get("top1", math.nan),
                    "agreement": r.get("agreement", math.nan),
                    "build_s": r.get("build_s", math.nan),
                    "error": r.get("error", ""),
                    "notes": " | ".join(r.get("notes", [])),
                }
            )
    return rows, best


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'engine':30s} {'batch':>5s} {'p50 ms':>9s} {'p90 ms':>9s} {'x eager':>8s} {'x bestFP32':>10s} "
        f"{'/peerINT8':>9s} {'size MB':>8s} {'top1':>6s} {'agree':>6s}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["error"]:
            print(f"{r['engine']:30s} {r['batch_size']:5d}  ERROR {r['error']}")
            continue
        print(
            f"{r['engine']:30s} {r['batch_size']:5d} {r['p50_ms']:9.2f} {r['p90_ms']:9.2f} "
            f"{r['speedup_vs_eager']:8.2f} {r['speedup_vs_best_fp32']:10.2f} {r['ratio_to_best_peer_int8']:9.2f} "
            f"{r['size_mb']:8.2f} {r['top1']:6.2f} {r['agreement']:6.2f}"
        )


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--weights", default="baseline", help="baseline | random (latency only) | a checkpoint path")
    ap.add_argument("--batch-size", default="1,32", help="comma-separated; the last output line is the worst ratio")
    ap.add_argument("--input-size", type=int, default=224, help="latency input side (accuracy runs at 32x32)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10, help="at least this many timed calls per round")
    ap.add_argument("--round-budget", type=float, default=3.0, help="seconds per round once --runs are done")
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--engines", default=",".join(DEFAULT_ENGINES))
    ap.add_argument("--engine-timeout", type=int, default=1800, help="seconds before a child is given up")
    ap.add_argument("--out", default="", help="CSV path (default: peers-<model>.csv in the work folder)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_size.split(",") if b.strip()]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    from qcore import hardware

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    work = Path(args.work or tempfile.mkdtemp(prefix="qcore-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    info = prepare_inputs(args, work)
    print(
        f"# {args.model}, weights {info['weights']}; {info['calib']} calibration and {info['eval']} evaluation "
        f"Fashion-MNIST images (32x32), FP32 top-1 {info['fp32_top1']:.2f}%"
    )
    print(
        f"# latency at {args.input_size}x{args.input_size}, batch {args.batch_size}, {args.threads} threads, "
        f"{args.rounds} rounds; {hardware.detect().summary()}; load average {os.getloadavg()[0]:.2f}"
    )
    results = []
    for engine in engines:
        r = run_engine(engine, args, work)
        r["model_name"] = args.model
        results.append(r)
        print(
            f"#   {engine}: {'error ' + r['error'] if r.get('error') else 'done'} ({time.time() - start:.0f} s, "
            f"load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    rows, best = summarize(results, args.batch_sizes)
    print_table(rows)
    out = Path(args.out or work / f"peers-{args.model}.csv")
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"# CSV: {out}; load average at the end {os.getloadavg()[0]:.2f}")
    top1 = {r["engine"]: r.get("top1", math.nan) for r in results}
    for bs, b in best.items():
        if b["mine"] and b["peer"]:
            print(
                f"# batch {bs}: fastest torch INT8 {b['mine']} (top-1 {top1[b['mine']]:.2f}), fastest peer INT8 "
                f"{b['peer']} (top-1 {top1[b['peer']]:.2f}), fastest FP32 {b['fp32']}"
            )
        print(f"batch {bs}: ratio_to_best_peer_int8={b['ratio']:.3f}")
    worst = max((b["ratio"] for b in best.values()), key=lambda v: -1 if math.isnan(v) else v, default=math.nan)
    print(f"ratio_to_best_peer_int8={worst:.3f}")


if __name__ == "__main__":
    main()
