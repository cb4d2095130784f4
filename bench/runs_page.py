"""The Runs page with many stored results (issue 28, item 5): first render, a filter change, memory per session.
Not a test: prints seconds and megabytes.

    .venv/bin/python bench/runs_page.py                # 10,000 results
    .venv/bin/python bench/runs_page.py --n 3000 --sessions 3

Stores ``--n`` made-up results (``scripts/many_results.py``: a measured row's size, 200 latency samples each) in
a fresh temporary QCORE_HOME, then drives the page with Streamlit's AppTest in this process, as the server would:
a first session warms the server (imports, cached resources), then

- **first render**: a new session opening Runs (the median of ``--sessions`` sessions);
- **filter change**: one session choosing a model, a status, typing "mse" in "Spec contains", clearing them, and
  turning to page 3 (the median of those reruns);
- **memory per session**: the server process's resident memory after ``--sessions`` sessions have each rendered
  the page and are kept open, less before, per session; and the bytes of the downloads a render makes up front
  (AppTest drops them after the run; a server holds a session's until it reruns or closes).

Goal (with 10,000 results): first render under 2 s, a filter change under 0.5 s, under 50 MB per session. Run it
on a quiet machine for the page's own figures. To measure another version of the page, copy this script and
``scripts/many_results.py`` into that checkout and run it there.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = "pages/runs.py"


def rss_mb() -> float:
    """This process's resident memory now, MB (Linux: /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def count_downloads() -> list[int]:
    """Count the bytes each page run hands Streamlit's media store (downloads made up front: a server holds a
    session's until it reruns or closes; sessions with the same bytes share one copy); returns the running total."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    total, add = [0], MediaFileManager.add

    def counted(self, path_or_data, *args, **kwargs):
        if isinstance(path_or_data, bytes):
            total[0] += len(path_or_data)
        return add(self, path_or_data, *args, **kwargs)

    MediaFileManager.add = counted
    return total


def open_runs(timeout: int):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.switch_page(RUNS).run()
    if at.exception:
        sys.exit(f"the Runs page failed: {[e.value for e in at.exception]}")
    return at


def filter_changes(at) -> list[float]:
    """Seconds of each rerun: a model chosen, a status, a text, all cleared, page 3 (where there are pages)."""

    def model():
        box = at.multiselect(key="f_model")
        box.select(box.options[0]).run()

    def clear():
        at.multiselect(key="f_model").set_value([])
        at.multiselect(key="f_status").set_value([])
        at.text_input(key="f_text").input("")
        at.run()

    steps = [model, lambda: at.multiselect(key="f_status").select("ok").run(),
             lambda: at.text_input(key="f_text").input("mse").run(), clear]  # fmt: skip
    if any(n.key == "runs-page" for n in at.number_input):  # the paged table (the one before showed every row)
        steps.append(lambda: at.number_input(key="runs-page").set_value(3).run())
    out = []
    for step in steps:
        out.append(timed(step))
        if at.exception:
            sys.exit(f"the Runs page failed: {[e.value for e in at.exception]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="results stored (default 10,000)")
    ap.add_argument("--sessions", type=int, default=3, help="new sessions timed and kept open (default 3)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds one page run may take (AppTest's limit)")
    args = ap.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)

    home = Path(tempfile.mkdtemp(prefix="qcore-runs-bench-"))
    os.environ["QCORE_HOME"] = str(home)
    os.environ.pop("QCORE_DB", None)
    os.environ["QCORE_APP_NO_WORKER"] = "1"
    from scripts.many_results import fill

    fill_s = timed(lambda: fill(home / "runs.sqlite", args.n))
    size = (home / "runs.sqlite").stat().st_size / 1e6
    print(f"{args.n:,} results stored in {fill_s:.1f} s ({size:.0f} MB database), {home}")
    downloads = count_downloads()
    warm = timed(lambda: open_runs(args.timeout))
    print(f"warm-up session (imports, cached resources): {warm:.2f} s")

    gc.collect()
    before, made = rss_mb(), downloads[0]
    kept, firsts = [], []
    for _ in range(args.sessions):
        start = time.perf_counter()
        kept.append(open_runs(args.timeout))
        firsts.append(time.perf_counter() - start)
    gc.collect()
    per_session = (rss_mb() - before) / args.sessions
    made_per_session = (downloads[0] - made) / 1e6 / args.sessions
    changes = filter_changes(kept[0])
    shown = len(kept[0].dataframe[0].value) if len(kept[0].dataframe) else 0

    first = statistics.median(firsts)
    change = statistics.median(changes)
    print(f"first render, a new session: median {first:.2f} s of {args.sessions} "
          f"({', '.join(f'{t:.2f}' for t in firsts)}); goal < 2 s: {first / 2:.2f} of it")
    print(f"filter change: median {change:.2f} s of {len(changes)} reruns ({', '.join(f'{t:.2f}' for t in changes)});"
          f" goal < 0.5 s: {change / 0.5:.2f} of it")
    print(f"memory per open session: {per_session:.1f} MB more resident memory; goal < 50 MB: {per_session / 50:.2f} "
          f"of it. Downloads made up front: {made_per_session:.1f} MB a render")
    print(f"table rows sent to the browser after the last change: {shown:,}")


if __name__ == "__main__":
    main()
