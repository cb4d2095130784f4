"""Charts and cards at 1024 px in headless Chromium (issue 24, items 4 and 7): the Sweep page's latency chart has
its points in the order of their speed-ups, its legend above the plot (never over a point) and 13 px ticks;
the Runs page's Compare cards are whole; the HTML report fits the screen's width and opens with its summary
and charts. Rows are inserted (nothing is measured); nothing here depends on timing.
Screenshots go to ``test-artifacts/charts-*.png``."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.browser import CHROMIUM, launch, start_server, stop_server, stop_workers, wait_idle
from tests.test_browser import ARTIFACTS
from tests.test_chart_axes import rows

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]
WIDTH = 1024
# a metric whose label or value does not fit shows "8.…": some element inside it is wider than its box
CUT = """e => [...e.querySelectorAll('[data-testid=stMetricLabel] *, [data-testid=stMetricValue] *')]
    .some(x => x.scrollWidth > x.clientWidth + 1)"""


def _seed(home: Path) -> tuple[str, list]:
    from qcore.runs.store import Store
    from qcore.runs.sweep import SweepConfig

    store = Store(home / "runs.sqlite")
    jid = store.submit_job(SweepConfig(model="resnet18").to_dict(), [r.spec.to_dict() for r in rows()[1:]])
    rs = rows(jid)
    for r in rs:
        store.add_result(r)
    store.update_job(jid, state="done", done=len(rs))
    return jid, rs


def _sweep_chart(page, url: str, jid: str, by_id: dict) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/sweep?job={jid}")
    expect(page.locator(".js-plotly-plot .scatterlayer path.point").first).to_be_visible()
    wait_idle(page, 120_000)
    seen = page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot');
        const box = s => gd.querySelector(s).getBoundingClientRect();
        return {data: gd.data.map(t => [t.name || '', t.customdata || [], t.x || []]),
                legend: box('.legend').bottom, plot: box('.nsewdrag').top,
                tick: parseFloat(getComputedStyle(gd.querySelector('.xtick text')).fontSize)}; }""")
    page.locator(".js-plotly-plot").first.screenshot(path=str(ARTIFACTS / "charts-sweep-1024.png"))
    xs = {cd[0]: x for name, cds, xs_ in seen["data"] if cds and not name.startswith(("calibration", "walk:"))
          for cd, x in zip(cds, xs_)}  # fmt: skip
    order = sorted(xs, key=xs.get)
    assert [by_id[i].speedup for i in order] == sorted((r.speedup for r in by_id.values()), reverse=True)
    assert seen["legend"] <= seen["plot"] + 1, seen  # the legend ends above the plot area
    assert seen["tick"] >= 13


def _compare(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/runs")
    expect(page.get_by_text("Compare two runs")).to_be_visible()
    wait_idle(page, 120_000)
    for i, text in ((0, "FP16"), (1, "percentile")):
        box = page.get_by_test_id("stSelectbox").nth(i).locator("input")
        box.click()
        box.fill(text)
        box.press("Enter")
        wait_idle(page, 120_000)
    cards = page.get_by_test_id("stMetric")
    expect(cards).to_have_count(7)
    cards.first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "charts-compare-1024.png"))
    cut = [cards.nth(i).inner_text().split("\n")[0] for i in range(7) if cards.nth(i).evaluate(CUT)]
    assert not cut, f"cut at {WIDTH} px: {cut}"


def _report(page, tmp_path: Path, rs: list) -> None:
    from qcore.present.report import write_html

    for r in rs:
        r.manifest = {"torch": "2.x", "calib_draws": [{"seed": 0, "indices": list(range(768))}]}
    path = tmp_path / "report.html"
    write_html(rs, path)
    page.goto(path.as_uri())
    page.locator(".js-plotly-plot").first.wait_for()
    dims = page.evaluate("""() => ({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight,
        chart: document.querySelector('.js-plotly-plot').getBoundingClientRect().top,
        table: document.querySelectorAll('table')[document.querySelectorAll('table').length - 1]
               .getBoundingClientRect().top})""")
    page.screenshot(path=str(ARTIFACTS / "charts-report-1024.png"))
    assert dims["w"] <= WIDTH, dims  # was 3,006 px: the table now scrolls in its own box
    assert dims["chart"] < page.viewport_size["height"] < dims["table"], dims  # chart on the first screen, table after
    assert dims["h"] < 5000, dims  # was 15,422 px with the manifest's indices one per line


def test_charts_cards_and_report_at_1024_px(tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("QCORE_HOME", str(tmp_path))
    jid, rs = _seed(tmp_path)
    proc, url = start_server(tmp_path)
    try:
        with sync_playwright() as pw:
            browser, page = launch(pw)
            page.set_viewport_size({"width": WIDTH, "height": 900})
            page.set_default_timeout(120_000)
            expect.set_options(timeout=180_000)
            try:
                _sweep_chart(page, url, jid, {r.run_id: r for r in rs})
                _compare(page, url)
                _report(page, tmp_path, rs)
            except BaseException:
                page.screenshot(path=str(ARTIFACTS / "charts-failure.png"), full_page=True)
                raise
            browser.close()
    finally:
        stop_server(proc)
        stop_workers(tmp_path)
