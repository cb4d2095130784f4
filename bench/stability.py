"""Is a speed-up the same when measured twice? (issue 11, item 2). Not a test: prints ratios and PASS/MISS.

Run on a quiet machine (nothing else running), from the repository root:

    .venv/bin/python bench/stability.py                                   # mobilenet_v3_small, 32 px, batch 1
    .venv/bin/python bench/stability.py --protocol old                    # the protocol before issue 11
    .venv/bin/python bench/stability.py --model resnet18 --input-size 64  # another model
    .venv/bin/python bench/stability.py --diagnose                        # why the FP32 reference moves

Sweep section (the figures the issue asks for): one sweep (``qcore.runs.sweep.run_sweep``, exactly as the app's
worker runs it) that lists the same INT8 static spec ``--repeat`` times (default 3), plus FP16 and INT8
dynamic between them, so that other kernels run in between. Prints each row's p50, the FP32 p50 interleaved
with it (the reference it was divided by), the speed-up, p90/p50, calls, load and the busy flag, then:

  same spec       max/min of the repeated spec's speed-ups              target <= 1.10
  references      max/min of the FP32 references of all rows            target <= 1.10
  FP32 row        each reference / the FP32 row's own p50 (worst)       target within 10%

Diagnose section: FP32 eager alone, then interleaved with each suspect, under the current protocol, each
reported as its p50 / the p50 of FP32 alone (1.00: no effect): a deep copy of itself (the other model's
presence in memory, caches), the INT8 model (oneDNN/fbgemm primitives, thread pool), FP32 right after the INT8
model ran alone (warm-up order), FP32 channels-last (the FP32 row is timed in a block with it), FP32 compiled by
AOTInductor (``--compiled``: the FP32 row's block has it too), and the protocol's switches one at a time (garbage
collector on, no alternation, no time-based warm-up) on FP32 against INT8.

The sweep times FP32 compiled by AOTInductor in the FP32 row's block, as the app does (the first build of a
model and shape takes a minute or more, then it is cached; ``--no-compiled-fp32`` leaves it out: compare both).
Weights are random (latency does not depend on their values) unless ``--weights`` names a checkpoint or
``baseline``; accuracy is evaluated on ``--eval-limit`` images only. Set QCORE_HOME to your own folder.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torchvision

from qcore.backends import quantize
from qcore.metrics import measure
from qcore.metrics.measure import TimingProtocol, time_interleaved
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep import SweepConfig, run_sweep

warnings.filterwarnings("ignore")
INT8 = QuantSpec("int8", granularity="per-channel", calibration="minmax", mode="static")
OTHERS = [QuantSpec("fp16"), QuantSpec("int8", mode="dynamic")]
OLD = TimingProtocol(warmup=3, warmup_s=0.0, min_runs=7, max_runs=200, alternate=False, gc_off=False)
PROTOCOLS = {"new": measure.PROTOCOL, "old": OLD}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def random_checkpoint(model: str, folder: Path) -> str:
    torch.manual_seed(0)
    path = folder / f"{model}-random.pt"
    torch.save(torchvision.models.get_model(model, num_classes=10).state_dict(), path)
    return str(path)


def sweep_section(args, weights: str) -> bool:
    config = SweepConfig(model=args.model, weights=weights, batch_size=args.batch, input_size=args.input_size,
                         eval_limit=args.eval_limit, calib_size=64, latency_budget_s=args.budget,
                         fp32_compiled=not args.no_compiled_fp32)  # fmt: skip
    specs = []
    for i in range(args.repeat):
        specs.append(INT8)
        if i < len(OTHERS):
            specs.append(OTHERS[i])
    rows = run_sweep(config, specs)
    print(f"\nsweep: {args.model}, input {args.input_size} px, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"protocol {args.protocol}, budget {args.budget} s per spec")  # fmt: skip
    print(f"{'spec':44s} {'p50 ms':>8s} {'FP32 ref':>8s} {'speedup':>8s} {'p90/p50':>8s} {'calls':>6s} "
          f"{'load':>5s}  busy")  # fmt: skip
    for r in rows:
        if not r.ok:
            print(f"{r.label[:44]:44s} {r.status}: {r.error[:80]}")
            continue
        print(f"{r.label[:44]:44s} {r.latency_ms_p50:8.3f} {r.fp32_latency_ms_p50:8.3f} {r.speedup:8.3f} "
              f"{r.latency_spread:8.3f} {r.timed_calls:6d} {r.load_avg if r.load_avg is not None else -1:5.1f}  "
              f"{r.busy}")  # fmt: skip
    ok = [r for r in rows if r.ok]
    base = next(r for r in ok if r.spec.is_reference)
    same = [r.speedup for r in ok if r.spec == INT8]
    refs = [r.fp32_latency_ms_p50 for r in ok if not r.spec.is_reference]
    same_ratio = max(same) / min(same)
    ref_ratio = max(refs) / min(refs)
    row_ratio = max(abs(v / base.latency_ms_p50 - 1) for v in refs)
    print(f"\nsame spec  {INT8.label()}: speed-ups {', '.join(f'{v:.3f}' for v in same)}; max/min {same_ratio:.3f} "
          f"{verdict(same_ratio <= 1.10)} (target <= 1.10)")  # fmt: skip
    print(f"references FP32 p50 interleaved with each row: {', '.join(f'{v:.3f}' for v in refs)} ms; max/min "
          f"{ref_ratio:.3f} {verdict(ref_ratio <= 1.10)} (target <= 1.10)")  # fmt: skip
    print(f"FP32 row   own p50 {base.latency_ms_p50:.3f} ms; worst reference off by {row_ratio:.1%} "
          f"{verdict(row_ratio <= 0.10)} (target within 10%)")  # fmt: skip
    return same_ratio <= 1.10 and ref_ratio <= 1.10 and row_ratio <= 0.10


def diagnose_section(args) -> None:
    torch.manual_seed(0)
    fp32 = torchvision.models.get_model(args.model, num_classes=10).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.input_size, args.input_size, generator=g)
    calib = [torch.randn(8, 3, args.input_size, args.input_size, generator=g) for _ in range(4)]
    q = quantize(fp32, INT8, calib, x)
    twin = copy.deepcopy(fp32)
    budget, proto = args.budget, PROTOCOLS[args.protocol]

    def p50(fns, name="fp32", protocol=proto):
        return time_interleaved(fns, budget_s=budget, protocol=protocol)[name].p50

    alone = p50({"fp32": lambda: fp32(x)})
    print(f"\ndiagnose: {args.model}, input {args.input_size} px, batch {args.batch}; FP32 eager alone p50 "
          f"{alone:.3f} ms (protocol {args.protocol}); each line: FP32 p50 / FP32 alone")  # fmt: skip
    cases = [
        ("FP32 with a deep copy of itself (another model in memory)",
         {"fp32": lambda: fp32(x), "twin": lambda: twin(x)}, proto),
        ("FP32 interleaved with INT8 static", {"fp32": lambda: fp32(x), "int8": lambda: q(x)}, proto),
        ("... garbage collector on", {"fp32": lambda: fp32(x), "int8": lambda: q(x)},
         dataclasses.replace(proto, gc_off=False)),
        ("... no alternation (A B A B)", {"fp32": lambda: fp32(x), "int8": lambda: q(x)},
         dataclasses.replace(proto, alternate=False)),
        ("... warm-up by count only (3 calls)", {"fp32": lambda: fp32(x), "int8": lambda: q(x)},
         dataclasses.replace(proto, warmup=3, warmup_s=0.0)),
    ]  # fmt: skip
    if args.compiled:  # the FP32 row is timed next to AOTInductor's program: does its OpenMP code slow eager?
        from qcore.backends.compiled import compiled_fp32

        program = compiled_fp32(fp32, x)
        cases.append(("FP32 interleaved with FP32 compiled (AOTInductor)",
                      {"fp32": lambda: fp32(x), "compiled": lambda: program(x)}, proto))  # fmt: skip
    cl = copy.deepcopy(fp32).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    cases.append(("FP32 interleaved with FP32 channels-last (the FP32 row's block)",
                  {"fp32": lambda: fp32(x), "cl": lambda: cl(x_cl)}, proto))  # fmt: skip
    for name, fns, protocol in cases:
        print(f"  {name:62s} {p50(fns, protocol=protocol) / alone:6.3f}")
    time_interleaved({"int8": lambda: q(x)}, budget_s=budget, protocol=proto)
    after = p50({"fp32": lambda: fp32(x)})
    print(f"  {'FP32 alone right after INT8 ran alone (warm-up order)':62s} {after / alone:6.3f}")
    again = p50({"fp32": lambda: fp32(x)})
    print(f"  {'FP32 alone once more (drift of the machine itself)':62s} {again / alone:6.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of timing per spec (the app's default: 6)")
    ap.add_argument("--repeat", type=int, default=3, help="how often the INT8 static spec is listed")
    ap.add_argument("--eval-limit", type=int, default=200)
    ap.add_argument("--weights", default="", help="a checkpoint path or 'baseline'; default: random weights")
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="new")
    ap.add_argument("--diagnose", action="store_true", help="also run the diagnose section")
    ap.add_argument("--only-diagnose", action="store_true")
    ap.add_argument("--no-compiled-fp32", action="store_true",
                    help="leave FP32 compiled (AOTInductor) out of the FP32 row's block (the app times it)")
    ap.add_argument("--compiled", action="store_true",
                    help="diagnose also FP32 next to its AOTInductor program (a build: a minute or more)")
    args = ap.parse_args(argv)
    measure.PROTOCOL = PROTOCOLS[args.protocol]  # the sweep reads the module's protocol
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_diagnose:
            ok = sweep_section(args, args.weights or random_checkpoint(args.model, Path(tmp)))
        if args.diagnose or args.only_diagnose:
            diagnose_section(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
