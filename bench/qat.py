"""Issue 18's figures: what a short QAT wins back of what PTQ lost, against an FP32 model fine-tuned the same way.

For each setting: PTQ loss and QAT loss (points of top-1 against the FP32 baseline), the control's change, the
recovered fraction ``(QAT - PTQ) / (control - PTQ)`` and the fine-tune's seconds (training steps only; on a
shared machine they are measured under load and only say what it cost there). Accuracy does not depend on load.

    QCORE_HOME=... python bench/qat.py --model mobilenet_v3_small --epochs 0.05 --eval-limit 2000
    python bench/qat.py --epochs 1 --eval-limit 0 --settings int4-per-tensor,int4-per-tensor-mse

Fine-tuned states are cached (``<data home>/qat``): a second run with the same settings only re-evaluates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcore.env.paths import atomic_write_bytes  # noqa: E402
from qcore.quant.spec import FP32, QuantSpec  # noqa: E402
from qcore.runs.sweep import SweepConfig, run_sweep  # noqa: E402

SETTINGS = {  # what a QAT can train: INT8 static (fx kernels) and INT4 weight-only (simulated kernel)
    "int8-per-tensor": dict(precision="int8", granularity="per-tensor", calibration="minmax"),
    "int8-per-channel": dict(precision="int8", granularity="per-channel", calibration="minmax"),
    "int8-per-tensor-entropy": dict(precision="int8", granularity="per-tensor", calibration="entropy"),
    "int4-per-tensor": dict(precision="int4", granularity="per-tensor", calibration="minmax"),
    "int4-per-channel": dict(precision="int4", granularity="per-channel", calibration="minmax"),
    "int4-per-tensor-mse": dict(precision="int4", granularity="per-tensor", calibration="mse"),
}
NAMES = {tuple(sorted(v.items())): k for k, v in SETTINGS.items()}


def _name(spec: QuantSpec) -> str:
    return NAMES[tuple(sorted(dict(precision=spec.precision, granularity=spec.granularity,
                                   calibration=spec.calibration).items()))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--epochs", type=float, default=1.0, help="qat_epochs (fractions allowed)")
    ap.add_argument("--eval-limit", type=int, default=2000, help="test images (0: all 10,000)")
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args(argv)
    unknown = [s for s in a.settings.split(",") if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; allowed: {', '.join(SETTINGS)}")
    specs = [QuantSpec(mode="qat", qat_epochs=a.epochs, **SETTINGS[s]) for s in a.settings.split(",")]
    config = SweepConfig(model=a.model, weights="baseline", calib_size=a.calib_size,
                         eval_limit=a.eval_limit or None, latency_budget_s=1.0, fp32_compiled=False)
    start = time.perf_counter()
    rows = run_sweep(config, [FP32, *specs], progress=lambda d, t, m: print(f"[{d}/{t}] {m}", file=sys.stderr))
    base = rows[0]
    print(f"{a.model}, FP32 top-1 {base.top1:.2f}% on {base.manifest['eval_size']} test images, "
          f"fine-tune {a.epochs:g} epoch, wall {time.perf_counter() - start:.0f} s, load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'setting':<24} {'PTQ loss':>9} {'QAT loss':>9} {'control':>8} {'recovered':>9} {'QAT - PTQ, 95%':>24} "
          f"{'QAT s':>7} {'control s':>9}")
    out = []
    for r in rows[1:]:
        if not r.ok:
            print(f"{_name(r.spec):<24} {r.status}: {r.error}")
            continue
        ctl_s = r.qat_curve["control"]["seconds"]
        rec = "n/a" if r.recovered is None else f"{r.recovered:.2f}"
        paired = "n/a"
        if r.qat_vs_ptq_lo is not None:
            paired = (f"{r.top1 - r.ptq_top1:+.2f} [{r.qat_vs_ptq_lo:+.2f}, {r.qat_vs_ptq_hi:+.2f}] "
                      f"+{r.qat_images_won}/-{r.qat_images_lost}")
        print(f"{_name(r.spec):<24} {r.ptq_top1 - base.top1:>+9.2f} {r.top1 - base.top1:>+9.2f} "
              f"{r.control_top1 - base.top1:>+8.2f} {rec:>9} {paired:>24} {r.finetune_seconds:>7.0f} {ctl_s:>9.0f}")
        out.append({"setting": _name(r.spec), "backend": r.backend, "kernel": r.kernel,
                    "fp32": base.top1, "ptq": r.ptq_top1, "qat": r.top1,
                    "control": r.control_top1, "recovered": r.recovered, "qat_vs_ptq_lo": r.qat_vs_ptq_lo,
                    "qat_vs_ptq_hi": r.qat_vs_ptq_hi, "qat_images_won": r.qat_images_won,
                    "qat_images_lost": r.qat_images_lost, "finetune_seconds": r.finetune_seconds,
                    "control_seconds": ctl_s, "curve": r.qat_curve, "eval_images": base.manifest["eval_size"]})
    print("points of top-1 against FP32; recovered = (QAT - PTQ) / (control - PTQ); seconds: training steps only")
    if a.json:
        atomic_write_bytes(a.json, json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
