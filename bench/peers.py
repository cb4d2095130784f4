"""Side-by-side: torch FP32 / qcore's INT8 paths vs ONNX Runtime and OpenVINO, each engine in its own process.

    .venv/bin/python bench/peers.py --model resnet18 --batch-size 1,32 --input-size 224 --out peers.csv

The parent prepares what every engine shares, once, in a temporary work folder: the FP32
weights, the calibration images (Fashion-MNIST, 32x32, --calib-size), the evaluation
images with labels (--eval-limit) and the FP32 reference logits. Then it runs one child
process per engine (``peers.py --child ENGINE --work DIR``): build, quantize on the same
calibration images, top-1 and agreement with FP32 on the evaluation images (at 32x32), a
first call at each batch size at --input-size x --input-size; then the latency, in slices of
--slice seconds (one warm-up call, then at least 2 timed) that the engines take in turn, one
slice each per turn, the order rotated each turn, until each has --round-budget seconds per
batch size and round for --rounds rounds (p50/p90 over all its calls): all the children are
alive, only one computes at a time (bench/_peers_slices.py says why: on a shared machine the
speed changes from one few seconds to the next, and turns put every engine in every phase);
--no-interleave times one engine after another instead. Last, for engines built through
qcore's build cache, the whole build again (now loaded from the cache). Engines never share a
process: their thread pools would disturb each other. Every engine gets --threads threads.

Engines (--engines, comma-separated; the default list is below):
  torch-fp32-eager, torch-fp32-channels-last     FP32 references
  torch-fp32-compile                             torch.compile, Inductor, freezing, per shape
  torch-fp32-aoti                                qcore's compiled FP32 reference (AOTInductor, cached)
  qcore-fx-int8, qcore-fx-int8-channels-last     qcore backend "fx" (torch.ao, x86)
  qcore-pt2e-int8                                qcore backend "pt2e" as it is (AOTInductor, cached)
  qcore-pt2e-int8+OPT[+OPT...]                   the same PT2E graph, compiled as the options say:
{opts}
  xnnpack-int8, xnnpack-fp32                     qcore backend "xnnpack" (ExecuTorch, XNNPACK delegate)
  qcore-pt2e-openvino-int8                       qcore backend "pt2e-openvino" (pt2e's graph, OpenVINO's kernels)
  ort-fp32, ort-int8-minmax, ort-int8-entropy, ort-int8-percentile  qcore backend "ort" (QDQ, per-channel)
  ov-fp32, ov-int8                               qcore backend "openvino" (NNCF)
  ov-pt2e-int8                                   PT2E with OpenVINOQuantizer (NNCF), run by OpenVINO
                                                 (shown beside the others, in neither ratio)

Output: one table (latency p50/p90, speed-up over FP32 eager and over the fastest FP32, ratio to
the fastest peer INT8, size, top-1, agreement, build seconds first and cached), a CSV (--out),
per batch size the fastest of each kind and what ``auto`` picks, the top-1 and build times of
each engine, and, as the last two lines, ``ratio_to_best_peer_int8=<x>`` (the fastest qcore
INT8 engine's time over the fastest ORT/OpenVINO INT8 engine's: the median over turns of their
slices' p50s, one over the other, each turn timing both in the same few seconds; with
--no-interleave the ratio of their p50s) and
``auto_ratio_to_best_peer_int8=<x>`` (the same for the engine of the backend ``auto`` picks for
a static INT8 spec), each the worst (largest) over the batch sizes given.
--record-auto stores the fx / pt2e / xnnpack / pt2e-openvino latencies as this machine's measurements, which
``auto`` then ranks backends by (qcore/backends/auto.py).

Run from a checkout with ``PYTHONPATH=.`` unless qcore is installed (``scripts/setup.sh`` installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import gc
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its engines, beside it (also under runpy)

from _peers_engines import PT2E_OPTS, build, environ_for, options_help, runner_of  # noqa: E402
from _peers_slices import Child, paired_ratio, run_children, serve  # noqa: E402

from qcore.metrics.measure import PROTOCOL, accuracy, size_bytes, stopwatch, time_interleaved  # noqa: E402

FP32_ENGINES = ("torch-fp32-eager", "torch-fp32-channels-last", "torch-fp32-compile", "torch-fp32-aoti",
                "ort-fp32", "ov-fp32", "xnnpack-fp32")  # fmt: skip
PEER_INT8 = ("ort-int8-minmax", "ort-int8-entropy", "ort-int8-percentile", "ov-int8")
QCORE_INT8 = ("qcore-fx-int8", "qcore-pt2e-int8", "qcore-pt2e-int8+cpp+noguard+cl", "xnnpack-int8",
              "qcore-pt2e-openvino-int8")  # fmt: skip
# The engine that runs what each backend ``auto`` may pick for static INT8 runs.
BACKEND_ENGINE = {"fx": "qcore-fx-int8", "pt2e": "qcore-pt2e-int8", "xnnpack": "xnnpack-int8",
                  "pt2e-openvino": "qcore-pt2e-openvino-int8"}  # fmt: skip
DEFAULT_ENGINES = FP32_ENGINES[:4] + QCORE_INT8 + ("ort-fp32",) + PEER_INT8[:3] + ("ov-fp32", "ov-int8", "xnnpack-fp32")


def is_qcore_int8(engine: str) -> bool:
    return engine.startswith("qcore-") or engine == "xnnpack-int8"


def is_peer_int8(engine: str) -> bool:
    return engine in PEER_INT8


# --- the child: one engine ------------------------------------------------------------------------


def run_child(args) -> None:
    from qcore.backends.buildcache import summarize
    from qcore.nets import models

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from qcore.env.malloc import keep_freed_memory

    keep_freed_memory()  # as qcore's own timing processes (and what --record-auto's measurements are marked with)
    work = Path(args.work)
    inp = torch.load(work / "inputs.pt", weights_only=True)
    model = models.build_model(inp["model"], inp["num_classes"]).eval()
    model.load_state_dict(inp["state_dict"])
    calib = list(inp["calib"].split(32))
    out = {"engine": args.child, "threads": torch.get_num_threads(), "latency": {}}
    try:
        with stopwatch() as t_build, contextlib.redirect_stdout(io.StringIO()):
            eng = build(args.child, model, calib, args.threads)
        in_build = sum(r.seconds for r in eng.builds)  # builds made (or loaded) inside build()
        out.update(build_s=t_build[0], size_bytes=size_bytes(eng.artifact), notes=eng.notes)
        with torch.inference_mode(), stopwatch() as t_eval:
            logits = torch.cat([eng.fn(eng.prep(x)).float() for x in inp["eval_x"].split(250)])
        acc = accuracy(logits, inp["eval_y"], inp["ref_logits"])
        out.update(top1=acc.top1, agreement=acc.agreement, top1_delta=acc.top1_delta, eval_s=t_eval[0])
        shapes, inputs = [inp["eval_x"][:250]], {}
        for bs in args.batch_sizes:
            g = torch.Generator().manual_seed(bs)
            raw = torch.randn(bs, 3, args.input_size, args.input_size, generator=g)
            inputs[bs] = eng.prep(raw)
            shapes.append(raw)
            with torch.inference_mode(), stopwatch() as t_first:
                if runner_of(eng.fn) is not None:  # a program of its own (else it would run padded to a larger one)
                    runner_of(eng.fn).prepare(inputs[bs])
                eng.fn(inputs[bs])  # compiles, for the engines that compile per shape
            out["latency"][str(bs)] = {"first_call_s": t_first[0]}

        def time_slice(bs: int) -> list[float]:
            call = lambda x=inputs[bs]: eng.fn(x)
            lat = time_interleaved({"v": call}, warmup=1, min_runs=2, max_runs=100_000, budget_s=args.slice,
                                   protocol=no_gc)  # fmt: skip
            return lat["v"].samples_ms

        no_gc = dataclasses.replace(PROTOCOL, gc_off=False)  # off for all the slices: no collection in each
        gc.collect()
        gc.disable()
        timed = serve(time_slice, args.batch_sizes, args.rounds)  # the parent says when (bench/_peers_slices.py)
        gc.enable()
        for bs in args.batch_sizes:
            out["latency"][str(bs)].update(samples_ms=sum(timed[bs], []),
                                           round_p50=[_p(s, 0.5) for s in timed[bs] if s])  # fmt: skip
        out["slices"] = timed[-1]
        first_calls = sum(v["first_call_s"] for v in out["latency"].values())
        if eng.builds:  # through the build cache: what building cost the first time, and cached
            now, first, note = summarize(eng.builds)
            out.update(build_first_s=t_build[0] - in_build + first, build_note=note)
            with stopwatch() as t_cached, contextlib.redirect_stdout(io.StringIO()):
                again = build(args.child, model, calib, args.threads)
                for x in shapes:
                    runner_of(again.fn).prepare(again.prep(x))
            out.update(build_cached_s=t_cached[0], build_cached_note=summarize(again.builds)[2])
        else:  # compiled at the first call of each shape, or nothing to compile
            out.update(build_first_s=t_build[0] + first_calls, build_cached_s=math.nan)
    except Exception as exc:  # one engine's failure is a row, not the end of the benchmark
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    (work / f"{args.child}.json").write_text(json.dumps(out))


# --- the parent: shared inputs, one child per engine, the table ------------------------------------


def prepare_inputs(args, work: Path) -> dict:
    from qcore import data
    from qcore.nets import models, weights

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


def start_child(engine: str, args, work: Path) -> Child:
    cmd = [sys.executable, __file__, "--child", engine, "--work", str(work), "--batch-size",
           ",".join(map(str, args.batch_sizes)), "--input-size", str(args.input_size), "--threads",
           str(args.threads), "--rounds", str(args.rounds), "--slice", str(args.slice)]  # fmt: skip
    env = environ_for(engine)
    if args.fresh_builds:
        env["QCORE_BUILDS"] = str(work / "builds")
    return Child(engine, cmd, env, work / f"{engine}.json", args.engine_timeout)


def _p(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else math.nan


def auto_engines(model: str, batch_sizes: list[int]) -> dict[int, tuple[str, str]]:
    """Per batch size: the engine of the backend ``auto`` picks for static INT8 per-channel, and why."""
    from qcore.backends import BackendUnavailable, resolve
    from qcore.quant.spec import QuantSpec

    out = {}
    for bs in batch_sizes:
        try:
            choice = resolve(QuantSpec("int8"), "cpu", model=model, batch_size=bs)
        except BackendUnavailable as exc:
            out[bs] = ("", str(exc))
            continue
        out[bs] = (BACKEND_ENGINE.get(choice.backend.name, ""), choice.why)
    return out


def summarize(results: list[dict], batch_sizes: list[int], auto: dict[int, tuple[str, str]]):
    rows, best = [], {}
    by_engine = {r["engine"]: r for r in results}
    for bs in batch_sizes:
        lat = {r["engine"]: r["latency"][str(bs)]["samples_ms"] for r in results if str(bs) in r["latency"]}
        p50 = {e: _p(s, 0.5) for e, s in lat.items()}
        eager = p50.get("torch-fp32-eager", math.nan)
        fp32 = {e: v for e, v in p50.items() if e in FP32_ENGINES}
        mine = {e: v for e, v in p50.items() if is_qcore_int8(e)}
        peers = {e: v for e, v in p50.items() if is_peer_int8(e)}
        best_fp32 = min(fp32, key=fp32.get) if fp32 else None
        best_peer = min(peers, key=peers.get) if peers else None
        best_mine = min(mine, key=mine.get) if mine else None
        auto_engine = auto.get(bs, ("", ""))[0]
        to_peer = {}  # each engine's time over the fastest peer's: paired by turns where interleaved, else p50s
        for e in p50 if best_peer else ():
            paired = paired_ratio(by_engine[e], by_engine[best_peer], bs)
            to_peer[e] = paired if paired is not None else p50[e] / peers[best_peer]

        best[bs] = {
            "fp32": best_fp32,
            "peer": best_peer,
            "mine": best_mine,
            "auto": auto_engine,
            "ratio": to_peer[best_mine] if best_mine and best_peer else math.nan,
            "auto_ratio": to_peer[auto_engine] if auto_engine in p50 and best_peer else math.nan,
        }
        for r in results:
            e, s = r["engine"], lat.get(r["engine"])
            v = p50.get(e, math.nan)
            rows.append({
                "model": r.get("model_name", ""), "engine": e, "batch_size": bs, "threads": r.get("threads"),
                "p50_ms": v, "p90_ms": _p(s or [], 0.9), "runs": len(s or []),
                "round_p50_ms": " ".join(f"{x:.2f}" for x in r["latency"].get(str(bs), {}).get("round_p50", [])),
                "speedup_vs_eager": eager / v if s else math.nan,
                "speedup_vs_best_fp32": fp32[best_fp32] / v if s and best_fp32 else math.nan,
                "ratio_to_best_peer_int8": to_peer[e] if s and best_peer else math.nan,
                "size_mb": r.get("size_bytes", math.nan) / 1e6, "top1": r.get("top1", math.nan),
                "agreement": r.get("agreement", math.nan), "build_s": r.get("build_s", math.nan),
                "build_first_s": r.get("build_first_s", math.nan), "build_cached_s": r.get("build_cached_s", math.nan),
                "error": r.get("error", ""), "notes": " | ".join(r.get("notes", [])),
            })  # fmt: skip
    return rows, best


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'engine':30s} {'batch':>5s} {'p50 ms':>9s} {'p90 ms':>9s} {'x eager':>8s} {'x bestFP32':>10s} "
        f"{'/peerINT8':>9s} {'size MB':>8s} {'top1':>6s} {'agree':>6s} {'build1 s':>8s} {'build2 s':>8s}"
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
            f"{r['size_mb']:8.2f} {r['top1']:6.2f} {r['agreement']:6.2f} {r['build_first_s']:8.1f} "
            f"{r['build_cached_s']:8.1f}"
        )


def parse_args(argv=None):
    doc = __doc__.replace("{opts}", options_help())
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--weights", default="baseline", help="baseline | random (latency only) | a checkpoint path")
    ap.add_argument("--batch-size", default="1,32", help="comma-separated; the last lines are the worst ratios")
    ap.add_argument("--input-size", type=int, default=224, help="latency input side (accuracy runs at 32x32)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-budget", type=float, default=3.0, help="seconds of timing per engine, batch and round")
    ap.add_argument("--slice", type=float, default=0.5,
                    help="seconds per slice: engines take turns, one slice each (at least 2 calls)")  # fmt: skip
    ap.add_argument("--no-interleave", dest="interleave", action="store_false",
                    help="time each engine's slices together, one engine after another (the old schedule)")  # fmt: skip
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--engines", default=",".join(DEFAULT_ENGINES))
    ap.add_argument("--engine-timeout", type=int, default=3600, help="seconds before a child is given up")
    ap.add_argument("--fresh-builds", action="store_true", help="an empty build cache (in the work folder)")
    ap.add_argument("--record-auto", action="store_true",
                    help="store fx/pt2e/xnnpack p50s as this machine's measurements for auto")  # fmt: skip
    ap.add_argument("--out", default="", help="CSV path (default: peers-<model>.csv in the work folder)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_size.split(",") if b.strip()]
    unknown = {o for e in args.engines.split(",") if e.startswith("qcore-pt2e-int8+") for o in e.split("+")[1:]}
    if unknown - set(PT2E_OPTS):
        ap.error(f"unknown PT2E option(s) {sorted(unknown - set(PT2E_OPTS))}; allowed: {', '.join(PT2E_OPTS)}")
    return args


def record_auto(args, rows: list[dict]) -> None:
    from qcore.backends.auto import record_measurement

    engine_backend = {e: b for b, e in BACKEND_ENGINE.items()}
    for bs in args.batch_sizes:
        p50 = {engine_backend[r["engine"]]: r["p50_ms"] for r in rows
               if r["batch_size"] == bs and r["engine"] in engine_backend and not r["error"]}  # fmt: skip
        if p50:
            source = f"bench/peers.py, {args.threads} threads, {time.strftime('%Y-%m-%d')}"
            record_measurement("static", args.model, bs, args.input_size, p50, source)
            values = ", ".join(f"{b} {v:.2f} ms" for b, v in p50.items())
            print(f"# recorded for auto: {args.model} batch {bs}: {values}")


def _worst(values) -> float:
    return max(values, key=lambda v: -1 if math.isnan(v) else v, default=math.nan)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    from qcore.env import hardware

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    auto = auto_engines(args.model, args.batch_sizes)
    engines += [e for e in dict.fromkeys(e for e, _ in auto.values()) if e and e not in engines]  # auto's too
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
    def event(engine: str, what: str) -> None:
        print(f"#   {engine}: {what} ({time.time() - start:.0f} s, load {os.getloadavg()[0]:.2f})", flush=True)

    results = run_children(engines, lambda e: start_child(e, args, work), args, event)
    for r in results:
        r["model_name"] = args.model
    rows, _ = summarize(results, args.batch_sizes, auto)
    if args.record_auto:
        record_auto(args, rows)
        auto = auto_engines(args.model, args.batch_sizes)  # what auto picks from now on
    rows, best = summarize(results, args.batch_sizes, auto)
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
                f"# batch {bs}: fastest qcore INT8 {b['mine']} (top-1 {top1[b['mine']]:.2f}), fastest peer INT8 "
                f"{b['peer']} (top-1 {top1[b['peer']]:.2f}), fastest FP32 {b['fp32']}; auto runs "
                f"{b['auto'] or 'nothing'}: {auto.get(bs, ('', ''))[1]}"
            )
        print(f"batch {bs}: ratio_to_best_peer_int8={b['ratio']:.3f}")
        print(f"batch {bs}: auto_ratio_to_best_peer_int8={b['auto_ratio']:.3f}")
    ok = [r for r in results if not r.get("error")]
    print("# top-1 % (agreement with FP32 %): " + ", ".join(
        f"{r['engine']} {r.get('top1', math.nan):.2f} ({r.get('agreement', math.nan):.2f})" for r in ok))  # fmt: skip
    print("# build s (first / cached; cached n/a where nothing is cached): " + ", ".join(
        f"{r['engine']} {r.get('build_first_s', math.nan):.1f} / {r.get('build_cached_s', math.nan):.1f}"
        for r in ok))  # fmt: skip
    print(f"ratio_to_best_peer_int8={_worst(b['ratio'] for b in best.values()):.3f}")
    print(f"auto_ratio_to_best_peer_int8={_worst(b['auto_ratio'] for b in best.values()):.3f}")


if __name__ == "__main__":
    main()
