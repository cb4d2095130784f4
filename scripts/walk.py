"""Walk Home, Explore, Sweep, Runs, Learn and Layers in headless Chromium from URLs that carry every value of every
select box and pill (as a shared link would), and print what each page shows: its URL after the load (a value the page
did not take is gone from it), any exception, the errors. Screenshots of the pages worth a look go to ``--out``.

    .venv/bin/python -m scripts.walk --out /tmp/walk        # about 60 pages; 4 minutes on 2 busy cores

No job runs (the AppTest cases of tests/test_app_settings.py check the same values without a browser; the run
end to end is tests/test_browser_paths.py). A URL names a value as the page shows it (``precision=INT8``,
``dataset=Fashion-MNIST``): Streamlit binds a select box to its label. Exits 1 when a page raised.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from streamlit.runtime.caching import cache_data_api

from qcore.quant.spec import CHOICES, GROUP_SIZES
from scripts.browser import launch, start_server, stop_server, stop_workers, wait_idle
from scripts.walk_seed import seed

logging.getLogger(cache_data_api.__name__).setLevel(logging.ERROR)  # "No runtime found": none is needed here
from ui.common import label_of  # noqa: E402
from ui.settings import UPLOAD_LABEL  # noqa: E402


def _queries(jobs: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(page and query, name, take a screenshot); ``jobs``: the stored jobs of :mod:`scripts.walk_seed`."""
    q = [("", "home", True), ("explore", "explore", True)]
    for k in ("precision", "granularity", "calibration", "scheme", "mode", "backend", "device"):
        q += [(f"explore?{urlencode({k: label_of(v)})}", f"explore-{k}-{v}", v in ("per-group", "percentile", "int4"))
              for v in CHOICES[k]]  # fmt: skip
    q += [(f"explore?precision=INT4&granularity=per-group&group={g}", f"explore-group-{g}", False) for g in GROUP_SIZES]
    q += [(f"explore?weights={w}", f"explore-weights-{w}", False) for w in ("auto", "pretrained", "baseline", "upload")]
    q += [(f"explore?{urlencode({'dataset': d})}", f"explore-dataset-{i}", False)
          for i, d in enumerate(("Fashion-MNIST", "CIFAR-10", UPLOAD_LABEL))]  # fmt: skip
    q += [(f"explore?model={m}", f"explore-model-{m}", False)
          for m in ("resnet18", "vit_b_16", "shufflenet_v2_x0_5", "squeezenet1_0", "inception_v3")]  # fmt: skip
    q += [("explore?precision=INT8&calibration=percentile&pct=99.9&mode=dynamic", "explore-percentile-dynamic", False)]
    q += [("sweep", "sweep", True)]
    for k in ("precision", "granularity", "calibration", "scheme", "mode", "backend"):
        q += [(f"sweep?{urlencode([(f'g_{k}', label_of(v)) for v in CHOICES[k]])}", f"sweep-all-{k}", k == "precision")]
    groups = [("g_group_size", g) for g in GROUP_SIZES] + [("g_granularity", "per-group"), ("g_precision", "INT4")]
    q += [(f"sweep?{urlencode(groups)}", "sweep-int4-groups", True),
          ("sweep?g_percentile=99.0&g_percentile=99.999&g_calibration=percentile", "sweep-percentiles", False),
          ("sweep?g_precision=INT8&g_mode=static&g_granularity=per-group", "sweep-impossible", True),
          ("sweep?x=size_bytes", "sweep-size-axis", False), ("runs", "runs", True),
          ("learn", "learn", True), ("layers", "layers", True),
          ("explore?precision=INT8&mode=qat&qat_epochs=0.05", "explore-qat", True),
          ("explore?precision=INT4&granularity=per-tensor&mode=qat", "explore-int4-qat", True),
          ("sweep?g_precision=INT4&g_mode=weight-only&g_mode=qat&g_granularity=per-tensor", "sweep-int4-qat", True),
          ("explore?draws=3", "explore-draws", False)]  # fmt: skip
    kept = "layer1.0.conv1;fc"  # the "Layers kept in FP32" field (issue 15): read, refused, per backend, on Sweep
    r18 = {"model": "resnet18"}
    q += [(f"explore?{urlencode({**r18, 'keep_float': kept})}", "explore-keep-float", True),
          (f"explore?{urlencode({**r18, 'keep_float': 'layer1.0.conv3'})}", "explore-keep-unknown", True),
          (f"explore?{urlencode({**r18, 'keep_float': 'fc'})}&precision=INT4", "explore-keep-int4", False),
          (f"sweep?{urlencode({**r18, 'keep_float': kept})}&g_backend=auto&g_backend=xnnpack", "sweep-keep-float",
           True)]
    q += [(f"explore?{urlencode({'model': 'resnet18', 'keep_float': 'fc', 'backend': b})}", f"explore-keep-backend-{b}",
           b == "xnnpack") for b in CHOICES["backend"]]  # fmt: skip
    q += [(f"layers?job={jobs['layers']}", "layers-job", True), (f"sweep?job={jobs['walk']}", "sweep-walk-strip", True)]
    return q


def _click_heatmap(page, url: str, jid: str, out: Path) -> list[str]:
    """Open the Layers job and click a heat-map cell (the 'fc' row): the Layer box and the histogram follow it.
    Returns what went wrong (nothing when the click chose the layer)."""
    page.set_viewport_size({"width": 1024, "height": 2600})
    page.goto(f"{url}/layers?job={jid}")
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', state="visible")
    page.wait_for_timeout(1200)
    wait_idle(page, 180_000)
    heat = page.locator(".js-plotly-plot").first
    heat.scroll_into_view_if_needed()
    row = heat.locator(".ytick text", has_text="fc (Linear)").first.bounding_box()
    col = heat.locator(".xtick text", has_text="weight SQNR dB").first.bounding_box()
    page.mouse.click(col["x"] + col["width"] / 2, row["y"] + row["height"] / 2)  # the cell (fc, weight SQNR)
    page.wait_for_timeout(1500)
    wait_idle(page, 180_000)
    title = page.get_by_text("Weights of fc and the clipping range").first
    problems = [] if title.count() else ["a click on the heat map's fc row did not open fc's histogram"]
    page.screenshot(path=str(out / "layers-clicked.png"))
    page.set_viewport_size({"width": 1024, "height": 1000})
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("test-artifacts/walk"), help="screenshots and log.json")
    ap.add_argument("--width", type=int, default=1024, help="viewport width in px (a projector's 1024 by default)")
    ap.add_argument("--only", default="", help="comma-separated parts of page names: walk only those (and the click)")
    args = ap.parse_args(argv)
    only = [p for p in args.only.split(",") if p]
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="qcore-walk-"))
    jobs = seed(home)
    proc, url = start_server(home)
    log, raised = [], False
    try:
        with sync_playwright() as pw:
            browser, page = launch(pw)
            page.set_viewport_size({"width": args.width, "height": 1000})
            page.set_default_timeout(180_000)
            for query, name, shot in _queries(jobs):
                if only and not any(p in name for p in only):
                    continue
                page.goto(f"{url}/{query}")
                page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', state="visible")
                for _ in range(2):  # the title comes first; the script may still be running after it
                    page.wait_for_timeout(1200)
                    wait_idle(page, 180_000)
                exc = page.get_by_test_id("stException").all_inner_texts()
                errors = page.get_by_test_id("stAlertContentError").all_inner_texts()
                now = page.url.removeprefix(url + "/")
                log.append({"name": name, "asked": query, "now": now, "exception": exc, "errors": errors})
                print(f"{name}: {now}" + (" EXCEPTION" if exc else "") + "".join(f"\n  error: {e}" for e in errors))
                raised |= bool(exc)
                if shot or exc:
                    tall = name.startswith(("layers-", "sweep-walk")) or "keep" in name  # (Streamlit scrolls inside)
                    if tall:
                        page.set_viewport_size({"width": args.width, "height": 2600})
                        page.wait_for_timeout(800)
                    page.screenshot(path=str(args.out / f"{name}.png"))
                    page.set_viewport_size({"width": args.width, "height": 1000})
            clicked = _click_heatmap(page, url, jobs["layers"], args.out)
            print("layers heat-map click: " + ("; ".join(clicked) or "opened fc's histogram"))
            raised |= bool(clicked)
            browser.close()
    finally:
        stop_server(proc)
        stop_workers(home)
        (args.out / "log.json").write_text(json.dumps(log, indent=1))
    return 1 if raised else 0


if __name__ == "__main__":
    sys.exit(main())
