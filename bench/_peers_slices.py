"""bench/peers.py's timing schedule: every engine's process alive at once, timed in short slices, round robin.

Why: on a shared virtual machine the same program runs at one speed for some seconds and 1.3-1.7x slower for
the next few (measured here, session 15: OpenVINO's mobilenet_v3_small at batch 1 in 1-second windows of one
process, 0.81-0.87 ms, then 1.29-1.58 ms, with no steal time in /proc/stat), which timing one engine after
another turns into a ratio that moves by tens of per cent from run to run. Slices of --slice seconds taken in
turn (each turn's order rotated) put every engine in every phase alike. Each engine still has a process of its
own, and only one process computes at a time: the others wait on their standard input.

The protocol, over each child's stdin and stdout: the child builds, evaluates and makes its first call of each
shape, prints ``@@peers ready``; then, per line ``time BATCH ROUND`` from the parent, times that batch size for
one slice and prints ``@@peers done``; on ``end`` (or the end of its input) it finishes (the cached build) and
writes its JSON. A child that exits early has written its error there.
"""

from __future__ import annotations

import json
import math
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

READY, DONE = "@@peers ready", "@@peers done"


def serve(time_slice, batch_sizes: list[int], rounds: int, stdin=None, stdout=None) -> dict[int, list[list[float]]]:
    """The child's side: ``time_slice(batch) -> samples_ms`` per ``time`` line until ``end``; each batch size's
    samples per round, and each slice's (batch, round, start, end wall-clock time, p50 ms) under key ``-1``."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    samples = {bs: [[] for _ in range(rounds)] for bs in batch_sizes}
    slices = []
    print(READY, file=stdout, flush=True)
    for line in stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "end":
            break
        bs, r = int(cmd[1]), int(cmd[2])
        start = time.time()
        got = time_slice(bs)
        samples[bs][r] += got
        slices.append([bs, r, start, time.time(), statistics.median(got) if got else math.nan])
        print(DONE, file=stdout, flush=True)
    samples[-1] = slices
    return samples


class Child:
    """One engine's process, as the parent drives it."""

    def __init__(self, engine: str, cmd: list[str], env: dict, json_path: Path, timeout: float) -> None:
        self.engine, self.path, self.timeout = engine, json_path, timeout
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, None), daemon=True).start()
        self.ready = self._wait(READY, timeout)

    def _read(self, stream, out) -> None:
        for line in stream:
            if out is not None and line.startswith("@@peers"):
                out.put(line.strip())
            elif out is None:
                self.err = (self.err + [line.rstrip()])[-20:]
        if out is not None:
            out.put(None)  # the child's stdout closed: it exited

    def _wait(self, marker: str, timeout: float) -> bool:
        try:
            return self.lines.get(timeout=timeout) == marker
        except queue.Empty:
            return False

    def ask(self, batch: int, rnd: int, slice_s: float) -> bool:
        """One slice of timing; False once the child cannot answer (it is then left out of the turns)."""
        try:
            self.proc.stdin.write(f"time {batch} {rnd}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return self._wait(DONE, slice_s + 120)

    def finish(self) -> dict:
        """``end``, then the child's JSON (or the error that stopped it)."""
        try:
            self.proc.stdin.write("end\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {"engine": self.engine, "error": f"timed out after {self.timeout:.0f} s", "latency": {}}
        if not self.path.exists():
            tail = self.err[-1:] or ["no output"]
            return {"engine": self.engine, "error": f"child exited {self.proc.returncode}: {tail[0][:300]}",
                    "latency": {}}  # fmt: skip
        return json.loads(self.path.read_text())


def paired_ratio(a: dict, b: dict, batch: int) -> float | None:
    """The median over turns of engine ``a``'s slice p50 over ``b``'s in the same turn, at ``batch`` (results as
    the children write them): where the machine's speed moves between phases, each turn compares the two in one
    phase, which the ratio of two overall p50s does not (with about half the calls in a slow phase, an overall
    median may land in either). None where the two were not timed in the same turns (not interleaved, or one
    stopped early)."""
    sa, sb = ([s[4] for s in r.get("slices", []) if s[0] == batch] for r in (a, b))
    if not sa or len(sa) != len(sb) or not (a.get("interleaved") and b.get("interleaved")):
        return None
    return statistics.median(x / y for x, y in zip(sa, sb))


def schedule(engines: list[str], batch_sizes: list[int], rounds: int, slices_per_round: int, interleave: bool):
    """The (engine, batch, round) slices in the order they are timed: with ``interleave``, turns of one slice per
    engine (the order rotated each turn), else each engine's slices together, one engine after another."""
    per_engine = [(bs, r) for r in range(rounds) for _ in range(slices_per_round) for bs in batch_sizes]
    if not interleave:
        return [(e, bs, r) for e in engines for bs, r in per_engine]
    out = []
    for turn, (bs, r) in enumerate(per_engine):
        k = turn % len(engines) if engines else 0
        out += [(e, bs, r) for e in engines[k:] + engines[:k]]
    return out


def run_children(engines: list[str], start, args, on_event) -> list[dict]:
    """Every engine's child (``start(engine) -> Child``), timed by :func:`schedule`; their results in order.
    Interleaved, all children are started (one after another, so builds do not overlap) before the first slice;
    else each is started, timed and finished before the next. ``on_event(engine, text)`` reports progress."""
    per_round = max(1, round(args.round_budget / args.slice))
    results: dict[str, dict] = {}

    def finish(child: Child) -> None:
        results[child.engine] = child.finish()
        results[child.engine]["interleaved"] = args.interleave and len(engines) > 1
        on_event(child.engine, results[child.engine].get("error") or "done")

    def time_all(kids: dict[str, Child], plan) -> None:
        for e, bs, r in plan:
            if e in kids and not kids[e].ask(bs, r, args.slice):
                finish(kids.pop(e))

    groups = [engines] if args.interleave else [[e] for e in engines]
    for group in groups:
        kids = {}
        for e in group:
            child = start(e)
            if child.ready:
                kids[e] = child
                on_event(e, "built")
            else:
                finish(child)
        time_all(kids, schedule(list(kids), args.batch_sizes, args.rounds, per_round, args.interleave))
        for child in kids.values():
            finish(child)
    return [results[e] for e in engines]
