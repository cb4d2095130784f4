"""Issue 26's figures: is the doctor's first suggestion the best fix?

For each of five points that lose accuracy or speed for different reasons, on the trained Fashion-MNIST baselines:
measure the point (a sweep of its own: FP32 and the spec), diagnose it (timed twice: without and with the Layers
measurement cached), measure the doctor's first suggestion, then measure *every* fix the doctor knows for that kind of
spec blindly (the catalogue below, plus every suggestion of the diagnosis), each as a move in the same job, and
compare. Accuracy points: the best fix is the highest top-1; the first suggestion passes within 0.2 points of it.
Speed points: the best is the lowest latency of one call at the point's batch size; the first suggestion passes
within 10 % of it. A larger batch is measured and printed too, per image, but is not in that comparison: it answers
a throughput question, not one call's latency (a batch-size suggestion first counts as a miss).

    python bench/doctor.py --eval-limit 2000 --json /tmp/doctor.json
    python bench/doctor.py --points int4-wo-pt --eval-limit 500     # one point, quicker

It writes into its own run database (``--db``, default a temporary file) and reads the baselines from the data
folder. Latencies are this machine's, under whatever load it had (printed); compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcore.quant.spec import QuantSpec  # noqa: E402

POINTS = {  # name -> (model, spec, batch size, what it should show)
    "int4-wo-pt": ("mobilenet_v3_small", QuantSpec("int4", granularity="per-tensor", mode="weight-only"), 1,
                   "accuracy: one INT4 scale per tensor"),
    "int8-pt-mnv2": ("mobilenet_v2", QuantSpec("int8", granularity="per-tensor", mode="static", backend="fx"), 1,
                     "accuracy: one INT8 scale per tensor on a depthwise network"),
    "slow-backend": ("mobilenet_v3_small", QuantSpec("int8", mode="static", backend="fx"), 1,
                     "speed: a backend slower than another here"),
    "dynamic-cnn": ("mobilenet_v3_small", QuantSpec("int8", mode="dynamic", backend="fx"), 1,
                    "speed: dynamic INT8 quantizes only the Linear layers of a CNN"),
    "fp16": ("mobilenet_v3_small", QuantSpec("fp16", backend="float"), 1, "speed: FP16 on this CPU"),
}


def catalogue(spec: QuantSpec, culprits: list[str], focus: str) -> list[tuple[str, QuantSpec, dict]]:
    """Every fix the doctor knows for this kind of spec: ``(what, spec, config change)``. QAT is left out (a
    fine-tune of minutes to hours; the doctor puts it first only for a loss of 10 points or more), and so is a
    larger batch on a point that lost accuracy (the batch changes no prediction)."""
    from qcore.backends import backends_for

    out: list[tuple[str, QuantSpec, dict]] = []
    if spec.is_float:
        out.append(("static INT8 instead", QuantSpec("int8", mode="static"), {}))
    else:
        if spec.granularity == "per-tensor":
            out.append(("per-channel", spec.replace(granularity="per-channel"), {}))
        if spec.kind == "weight-only" and spec.precision == "int4":
            out.append(("per-group 64", spec.replace(granularity="per-group", group_size=64), {}))
        for c in ("minmax", "percentile", "entropy", "mse"):
            if c != spec.calibration and (spec.kind == "static" or c in ("minmax", "mse", "percentile")):
                try:
                    out.append((f"calibration {c}", spec.replace(calibration=c, percentile=99.99), {}))
                except ValueError:  # a calibration this kind of spec does not read
                    pass
        other = "symmetric" if spec.scheme == "asymmetric" else "asymmetric"
        out.append((f"scheme {other}", spec.replace(scheme=other), {}))
        if spec.kind != "dynamic":
            out += [("CLE", spec.replace(equalize=True), {}), ("CLE + BC", spec.replace(equalize=True,
                                                                                          bias_correction=True), {}),
                    ("AdaRound", spec.replace(rounding="adaround"), {})]
        out += [(f"{n} in FP32", spec.replace(keep_float=(n,)), {}) for n in culprits[:3]]
        out.append(("4x calibration images", spec, {"calib_size": 1024}))
        if spec.kind == "dynamic":
            out.append(("static INT8 instead", spec.replace(mode="static", backend="auto"), {}))
    for b in backends_for(spec.replace(backend="auto"), "cpu") if not spec.is_float else ():
        if b != spec.backend:
            out.append((f"backend {b}", spec.replace(backend=b), {}))
    if focus != "accuracy":
        out.append(("batch 32", spec, {"batch_size": 32}))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=",".join(POINTS), help=f"comma list of {', '.join(POINTS)}")
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    # auto measures the INT8 backends of each point here on first use (as a user's first sweep does): on
    db = a.db or Path(tempfile.mkdtemp(prefix="qcore-doctor-")) / "runs.sqlite"
    os.environ["QCORE_DB"] = str(db)
    from bench._doctor_run import run_point

    out = []
    for name in a.points.split(","):
        if name not in POINTS:
            ap.error(f"unknown point {name!r}; allowed: {', '.join(POINTS)}")
        model, spec, batch, why = POINTS[name]
        t = time.time()
        res = run_point(db, name, model, spec, batch, a.eval_limit, catalogue)
        res.update(point=name, why=why, wall_s=round(time.time() - t, 1), load=os.getloadavg()[0])
        out.append(res)
        print(json.dumps(res, indent=1, default=str), flush=True)
    passed = sum(1 for r in out if r.get("passed"))
    print(f"first suggestion best or within tolerance: {passed} of {len(out)} (goal: 4 of 5)")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
