"""The model zoo: every torchvision classifier through every quantization mode, one status per cell.

    nice -n 19 .venv/bin/python bench/zoo.py                  # all models, resumes bench/zoo.csv
    .venv/bin/python bench/zoo.py --models resnet18,swin_t    # a few (rows already in the CSV are kept)
    .venv/bin/python bench/zoo.py --redo shufflenet_v2_x0_5   # run these again, replacing their rows
    .venv/bin/python bench/zoo.py --table-only                # rewrite docs/zoo.md from the CSV

For each model of ``qcore.nets.models.list_models()``: the smallest input side qcore accepts (the first of
32, 64, 96, ... that ``qcore.nets.models.check_input_size`` takes, the ladder its own error message offers),
random weights (seed 0) and a 10-class head, two random calibration batches of 4 images. Each mode's
default spec goes through ``qcore.backends.quantize`` with ``backend="auto"``, as a sweep would; then the
quantized model runs a batch of 4 and a batch of 1 (a sweep's evaluation and latency calls) and must
give finite logits of the right shape. Where a static or dynamic cell is not ``ok``, the other backends
that take the spec are tried too, and the cell says what they did (a user can pick them with --backend).

Each model runs in a subprocess of its own (``--one``), one mode after the other, each row appended to
the CSV the moment it is known: a crash, an out-of-memory kill or a hang costs one cell, and a killed
run resumes where it stopped. A mode that runs past ``--timeout`` seconds is killed and recorded as a
timeout, with the phase it was in. Not a timing: random weights, random images, a busy machine are fine.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo_cell import COLUMNS, MODES, append_row, classify, read_rows, run_one, size_params, spec_of  # noqa: E402
from zoo_table import write_table  # noqa: E402


def alternative_tasks(rows: list[dict]) -> dict[str, list[str]]:
    """For each static or dynamic cell that is not ``ok``, ``mode@backend`` for every other torch backend
    that runs its spec here (``qcore.backends.backends_for``), the ones without a compile first; not for
    cells whose only reason is dynamic mode's FP32 convolutions (no backend has dynamic int8 convolutions)."""
    from qcore.backends import backends_for, get_backend

    out: dict[str, list[str]] = {}
    for r in rows:
        if r["via"] != "auto" or r["mode"] not in ("static", "dynamic") or r["status"] not in ("fails", "partial") \
                or r["reason"] == "dynamic-conv":
            continue
        names = [n for n in backends_for(spec_of(r["mode"]), "cpu")
                 if n != r["backend"] and not get_backend(n).own_threads]  # ORT, OpenVINO: not torch's kernels
        out[r["mode"]] = [f"{r['mode']}@{n}" for n in sorted(names, key=lambda n: n == "pt2e")]
    return out


def drop_rows(csv_path: Path, models: set[str]) -> None:
    rows = [r for r in read_rows(csv_path) if r["model"] not in models]
    tmp = csv_path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, csv_path)


# --- the parent ------------------------------------------------------------------------------------


def _task_of(r: dict) -> str:
    return r["mode"] if r.get("via", "auto") in ("", "auto") else f"{r['mode']}@{r['via']}"


def _last_markers(log: Path) -> tuple[str | None, str | None]:
    """The task the child announced last and is still on (None between tasks), and its phase."""
    task = phase = None
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in lines:
        if line.startswith("@@ task "):
            task, phase = line[8:].strip(), None
        elif line.startswith("@@ phase "):
            phase = line[9:].strip()
        elif line.startswith("@@ done "):
            task = phase = None
    return task, phase


def run_tasks(name: str, tasks: list[str], csv_path: Path, timeout: float, log_dir: Path) -> None:
    """Runs children until every task of ``name`` has a row; a hung or dead child costs one task."""
    while True:
        done = {_task_of(r) for r in read_rows(csv_path) if r["model"] == name}
        todo = [t for t in tasks if t not in done]
        if not todo:
            return
        log = log_dir / f"{name}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--tasks", ",".join(todo),
               "--csv", str(csv_path)]
        with open(log, "a") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        current, started, killed = None, time.monotonic(), False
        while proc.poll() is None:
            time.sleep(1.0)
            task, _ = _last_markers(log)
            if task != current:
                current, started = task, time.monotonic()
            if time.monotonic() - started > timeout:  # a task, or the start-up before the first
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own process group: it and its compile workers
                proc.wait()
                killed = True
        task, phase = _last_markers(log)
        done = {_task_of(r) for r in read_rows(csv_path) if r["model"] == name}
        missing = [t for t in todo if t not in done]
        if not missing:
            continue
        task = task if task in missing else missing[0]
        if killed:
            reason, error = "timeout", f"killed after {timeout:.0f} s during {phase or 'start-up'}"
        elif proc.returncode and proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            reason = "oom" if sig == "SIGKILL" else "other"
            error = f"process died of {sig} during {phase or 'start-up'}" + (
                " (the kernel's out-of-memory killer sends SIGKILL)" if sig == "SIGKILL" else "")
        else:
            tail = [ln for ln in log.read_text(errors="replace").splitlines()
                    if ln.strip() and not ln.startswith("@@")][-1:]
            error = f"exit code {proc.returncode} during {phase or 'start-up'}: {' '.join(tail)[:300]}"
            reason = classify(error)
        mode, _, via = task.partition("@")
        append_row(csv_path, {"model": name, "mode": mode, "via": via or "auto", **size_params(name),
                              "status": "fails", "reason": reason, "error": error,
                              "seconds": f"{time.monotonic() - started:.1f}",
                              "finished": dt.datetime.now().isoformat(timespec="seconds")})


def run_alternatives(name: str, csv_path: Path, timeout: float, log_dir: Path) -> None:
    """For each static or dynamic cell of ``name`` that is not ``ok``, the other backends one at a time, until
    one leaves nothing but what no backend can do (dynamic mode's FP32 convolutions)."""
    for alts in alternative_tasks([r for r in read_rows(csv_path) if r["model"] == name]).values():
        for task in alts:
            run_tasks(name, [task], csv_path, timeout, log_dir)
            if any(_task_of(r) == task and (r["status"] == "ok" or r["reason"] == "dynamic-conv")
                   for r in read_rows(csv_path) if r["model"] == name):
                break


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=ROOT / "bench" / "zoo.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo.md")
    ap.add_argument("--models", default="", help="comma list (default: every model)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--redo", default="", help="comma list of models whose rows are dropped and run again")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one mode of one model may take")
    ap.add_argument("--alt-timeout", type=float, default=900.0,
                    help="seconds one try of another backend may take (0: no tries)")
    ap.add_argument("--table-only", action="store_true", help="only rewrite the table from the CSV")
    ap.add_argument("--note", default="", help="a sentence appended to the table's last section")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # the child: one model ...
    ap.add_argument("--tasks", default="", help=argparse.SUPPRESS)  # ... these tasks
    args = ap.parse_args()
    if args.one:
        run_one(args.one, args.tasks.split(","), args.csv)
        return
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; allowed: {', '.join(MODES)}")
    from qcore.nets import models

    if not args.table_only:
        names = [m for m in args.models.split(",") if m] or models.list_models()
        unknown = sorted(set(names) - set(models.list_models()))
        if unknown:
            ap.error(f"unknown model(s) {unknown}; see python -m qcore models")
        if args.redo:
            drop_rows(args.csv, set(args.redo.split(",")))
        log_dir = args.csv.parent / "zoo-logs"
        log_dir.mkdir(parents=True, exist_ok=True)

        def report(i: int, name: str, t0: float) -> None:
            got = {_task_of(r): r["status"] for r in read_rows(args.csv) if r["model"] == name}
            print(f"[{i + 1}/{len(names)}] {name}: " + ", ".join(f"{t} {s}" for t, s in got.items())
                  + f" ({time.monotonic() - t0:.0f} s)", flush=True)

        for i, name in enumerate(names):  # every cell first, so that the table is whole early
            t0 = time.monotonic()
            run_tasks(name, modes, args.csv, args.timeout, log_dir)
            report(i, name, t0)
        if args.alt_timeout > 0:  # then the other backends, smallest models first
            by_size = sorted(names, key=lambda n: models.model_info(n).params or 0)
            for i, name in enumerate(by_size):
                t0 = time.monotonic()
                run_alternatives(name, args.csv, args.alt_timeout, log_dir)
                report(i, name, t0)
    write_table(args.csv, args.out, args.note)


if __name__ == "__main__":
    main()
