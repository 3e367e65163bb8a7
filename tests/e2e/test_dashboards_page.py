"""`make dashboards`'s page in Chromium: every dashboard the environments synthesize, laid out as
its mosaic says, each chart filled from the metrics a rehearsal recorded
(tests/fixtures/monitoring/rehearsal-metrics.prom, one scrape of each service after the deploy
rehearsal's traffic; `make dashboards` records a new one). A chart on a metric only Google's side
can emit says so and links its documentation; a misspelt metric shows as "no data" and fails."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from pages import SCREENSHOTS
from playwright.sync_api import Browser, Page

from analysis.dashboard_page import dashboards
from iac import ROOT, Stacks
from scripts.render_dashboards import render

RECORDED = ROOT / "tests" / "fixtures" / "monitoring" / "rehearsal-metrics.prom"


def opened(browser: Browser, stacks: Stacks, tmp_path: Path) -> Page:
    text, _ = render(stacks, RECORDED)
    (tmp_path / "dashboards.html").write_text(text)
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto((tmp_path / "dashboards.html").as_uri())
    return page


def test_every_chart_of_every_dashboard_has_data(browser: Browser, synth_json: Stacks, tmp_path: Path) -> None:
    expected = [
        (board.title, chart.title) for _, stack in sorted(synth_json.items()) for board in dashboards(stack)
        for chart in board.charts
    ]  # fmt: skip
    assert len(expected) > 40  # dev's four dashboards and prod's five
    page = opened(browser, synth_json, tmp_path)
    charts = page.locator("figure.chart")
    assert charts.count() == len(expected)
    states = charts.evaluate_all("cs => cs.map(c => c.dataset.state)")
    assert "nodata" not in states
    # Our services' charts draw the recorded series; the rest are Google's or a real vLLM's own.
    drawn = page.locator("figure.chart[data-state='data']")
    assert drawn.count() >= len(expected) // 2
    assert all(n >= 1 for n in drawn.evaluate_all("cs => cs.map(c => c.querySelectorAll('.bar').length)"))
    for chart in page.locator("figure.chart[data-state='external']").all():
        assert chart.locator("a[href^='https://']").count() >= 1, chart.inner_text()
    overview = page.get_by_role("region", name="prod Overview")
    overview.screenshot(path=str(SCREENSHOTS / "dashboards.png"))


def test_a_misspelt_metric_shows_no_data(browser: Browser, synth_json: Stacks, tmp_path: Path) -> None:
    broken = copy.deepcopy(synth_json["prod-observability"])
    (board,) = [
        b for b in broken["resource"]["google_monitoring_dashboard"].values() if "Overview" in b["dashboard_json"]
    ]
    assert "gateway_requests_total" in board["dashboard_json"]
    board["dashboard_json"] = board["dashboard_json"].replace("gateway_requests_total", "gateway_request_total")
    page = opened(browser, {"prod-observability": broken}, tmp_path)
    empty = page.locator("figure.chart[data-state='nodata']")
    assert empty.count() >= 1
    assert "gateway_request_total" in empty.first.inner_text()
    assert json.loads(board["dashboard_json"])  # still a dashboard: only the metric's name is wrong
