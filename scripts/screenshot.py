"""``make screenshot``: README's picture (``assets/pareto.png``) from a real sweep on a trained baseline.

The Sweep & Pareto page after a sweep of FP32, FP16, BF16, INT8 (static, weight-only) and INT4 (weight-only)
settings of resnet18 (or ``--model``) on Fashion-MNIST, with the FP32 weights qcore trained and cached in the
data home (``python -m qcore train --model resnet18 --dataset fashion-mnist``, about 8 minutes on 2 cores).
The app runs with a temporary QCORE_HOME that links to that cached baseline, so the user's run database is
not touched; the sweep runs in its background worker as a user's would, driven in headless Chromium.

    .venv/bin/python -m scripts.screenshot                  # resnet18; refuses when no baseline is cached
    .venv/bin/python -m scripts.screenshot --model mobilenet_v3_small --out /tmp/pareto.png
    .venv/bin/python -m scripts.screenshot --checkpoint w.pt --out /tmp/x.png   # the mechanics, other weights

13 specs (the FP32 baseline first), each on 2,000 test images with a 1-second timing budget. The mechanics
took 9 minutes here with ``--checkpoint`` (random weights), 200 test images and a 0.3-second budget while
other jobs loaded the 2 cores; time it again on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from qcore.env.paths import atomic_write_bytes
from qcore.nets import train
from scripts.browser import CHROMIUM, ROOT, center, launch, start_server, stop_server, stop_workers, wait_idle

__all__ = ["GRID", "main"]

# The sweep shown: every precision, the granularities and the two calibration methods that matter most.
GRID = [("g_precision", p) for p in ("FP32", "FP16", "BF16", "INT8", "INT4")] + [
    ("g_granularity", "per-channel"), ("g_granularity", "per-group"), ("g_calibration", "min-max"),
    ("g_calibration", "MSE"), ("g_mode", "static"), ("g_mode", "weight-only"),
]  # fmt: skip


def _cached_baseline(model: str) -> Path:
    """The baseline a sweep with ``weights=baseline`` would load, from the user's data home; exits if absent."""
    recipe = train.recipe_for(model, "fashion-mnist")
    path = train.find_baseline(model, "fashion-mnist", recipe)
    if path is None:
        where = train.baseline_path(model, "fashion-mnist", recipe).parent
        sys.exit(f"no trained {model} baseline on Fashion-MNIST in {where}; train it first: "
                 f"python -m qcore train --model {model} --dataset fashion-mnist")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18", help="a model with a cached Fashion-MNIST baseline")
    ap.add_argument("--out", default=str(ROOT / "assets" / "pareto.png"))
    ap.add_argument("--budget", default="1", help="seconds of timing per spec")
    ap.add_argument("--eval-limit", default="2000", help="test images each spec is evaluated on")
    ap.add_argument("--checkpoint", help="sweep these weights instead of the baseline (to check the mechanics)")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")
    baseline = None if args.checkpoint else _cached_baseline(args.model)
    home = Path(tempfile.mkdtemp(prefix="qcore-screenshot-"))
    (home / "baselines").mkdir()
    weights = [("weights", "baseline")]
    if baseline is not None:
        for f in (baseline, baseline.with_suffix(".json")):
            (home / "baselines" / f.name).symlink_to(f)
    else:
        from qcore.service import uploads

        os.environ["QCORE_HOME"] = str(home)  # where the app looks for uploads
        ckpt = Path(args.checkpoint)
        weights = [("weights", "upload"), ("ckpt", uploads.save_checkpoint(ckpt.read_bytes(), ckpt.name)[0].name)]
    query = urlencode([("model", args.model), *weights, ("budget", args.budget), ("eval", args.eval_limit), *GRID])
    proc, url = start_server(home)
    try:
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as pw:
            browser, page = launch(pw)
            page.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)
            page.goto(f"{url}/sweep?{query}")
            expect(page.get_by_text(re.compile(r"specs? \+ the FP32 baseline")).first).to_be_visible()
            page.get_by_role("button", name="Run sweep").click()
            expect(page.get_by_text(re.compile(r"^Job \w+: finished"))).to_be_visible(timeout=1_800_000)
            points = page.locator(".js-plotly-plot").first.locator(".scatterlayer path.point")
            expect(points.first).to_be_visible()
            wait_idle(page)
            page.wait_for_timeout(1500)  # the table draws on a canvas after it appears
            x, y = center(page, points.nth(points.count() // 2))
            page.mouse.move(x, y)  # a hovered point shows what every point carries
            page.wait_for_timeout(500)
            shot = page.screenshot(full_page=True)
            browser.close()
        atomic_write_bytes(Path(args.out), shot)
        print(f"wrote {args.out} ({args.model}, {baseline.name if baseline else args.checkpoint})")
        from qcore.present.report import text_table
        from qcore.runs.store import Store

        print(text_table(Store(home / "runs.sqlite").results()))
    finally:
        stop_server(proc)
        stop_workers(home)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
