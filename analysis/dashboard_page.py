"""The dashboards as a page: each synthesized ``google_monitoring_dashboard``'s tiles at their
mosaic positions, each chart filled from the metrics a rehearsal recorded (`make dashboards`).

A rehearsal records one scrape of each service, not a time series, so a chart shows each series'
recorded value (a counter's total, a histogram's count of observations), not its PromQL curve.
A chart is in one of three states:

- ``data``: a metric it names was emitted by a running service, and the chart draws its series;
- ``external``: it names only metrics no local process can emit (Google's own, or a real vLLM
  server's), each listed with its documentation in analysis/observability.py's KNOWN;
- ``nodata``: anything else, a misspelt metric included. `make dashboards` and its test refuse it.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from analysis.observability import HISTOGRAM_SUFFIXES, KNOWN, promql_name, promql_references

# Google's metrics by their PromQL names, and vLLM's by their own: emitted only on Google's side.
_EXTERNAL = {promql_name(t) if "/" in t else t: t for t in KNOWN}
_SERIES_SHOWN = 4  # a chart's bars, the largest series first: what a tile has room for


@dataclass
class Chart:
    title: str
    query: str
    x: int
    y: int
    width: int
    height: int
    state: str = "nodata"
    series: list[tuple[str, float]] = field(default_factory=list)
    documented: list[str] = field(default_factory=list)


@dataclass
class Dashboard:
    title: str
    columns: int
    charts: list[Chart]


def recorded(text: str) -> dict[str, list[tuple[str, float]]]:
    """Each sample name's series, (labels as written, value), from Prometheus text expositions."""
    found: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        found.setdefault(name.strip(), []).append((labels.rstrip("}").replace('"', ""), float(value)))
    return found


def dashboards(stack: dict[str, Any]) -> list[Dashboard]:
    """The dashboards of a synthesized stack (cdk.tf.json), their charts unfilled."""
    found = []
    for resource in stack.get("resource", {}).get("google_monitoring_dashboard", {}).values():
        body = json.loads(resource["dashboard_json"])
        layout = body["mosaicLayout"]
        charts = [
            Chart(
                tile["widget"]["title"],
                tile["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["prometheusQuery"],
                tile.get("xPos", 0),
                tile.get("yPos", 0),
                tile["width"],
                tile["height"],
            )
            for tile in layout["tiles"]
        ]
        found.append(Dashboard(body["displayName"], layout["columns"], charts))
    return found


def fill(board: Dashboard, samples: dict[str, list[tuple[str, float]]]) -> Dashboard:
    """Each chart's state and series from the recorded samples."""
    for chart in board.charts:
        names = [reference.metric for reference in promql_references(chart.query, board.title)]
        series = [
            (f"{sample} {labels}".strip(), value)
            for name in names
            for sample in _sample_names(name)
            for labels, value in samples.get(sample, [])
        ]
        if series:
            chart.state = "data"
            chart.series = sorted(series, key=lambda s: -s[1])[:_SERIES_SHOWN]
        elif names and all(_external(name) for name in names):
            chart.state = "external"
            chart.documented = sorted({KNOWN[_EXTERNAL[_external(name)]].url for name in names})
    return board


def _external(metric: str) -> str:
    """The KNOWN name of a metric only Google's side emits (a histogram's by its family), or ""."""
    for name in (metric, _family(metric)):
        if name in _EXTERNAL:
            return name
    return ""


def _family(metric: str) -> str:
    """A histogram's sample name (``x_bucket``) as its family (``x``)."""
    return metric.rsplit("_", 1)[0] if metric.endswith(HISTOGRAM_SUFFIXES) else metric


def _sample_names(metric: str) -> tuple[str, ...]:
    """The recorded samples a metric is drawn from: a histogram's by its count of observations."""
    if metric.endswith(HISTOGRAM_SUFFIXES):
        return (f"{_family(metric)}_count",)
    return (metric, f"{metric}_count")


def page(boards: list[Dashboard], recorded_from: str) -> str:
    """One self-contained HTML page (no script, no external resource)."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Dashboards</title><style>",
        _STYLE,
        "</style></head><body><h1>Dashboards</h1>",
        f"<p>Filled with one scrape of each service recorded in a rehearsal ({html.escape(recorded_from)}): "
        "each bar is a series' recorded value, not its curve over time.</p>",
    ]
    for board in boards:
        parts.append(f"<section aria-label='{html.escape(board.title)}'><h2>{html.escape(board.title)}</h2>")
        parts.append(f"<div class='mosaic' style='grid-template-columns: repeat({board.columns}, 1fr)'>")
        parts.extend(_chart(chart) for chart in board.charts)
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "".join(parts)


def _chart(chart: Chart) -> str:
    place = f"grid-column: {chart.x + 1} / span {chart.width}; grid-row: {chart.y + 1} / span {chart.height}"
    body = ""
    if chart.state == "data":
        top = max(value for _, value in chart.series) or 1.0
        body = "".join(
            f"<div class='bar'><span class='label'>{html.escape(label)}</span>"
            f"<span class='fill' style='width: {max(value / top * 100, 1):.1f}%'></span>"
            f"<span class='value'>{value:g}</span></div>"
            for label, value in chart.series
        )
    elif chart.state == "external":
        links = "".join(f"<a href='{html.escape(url)}'>{html.escape(url)}</a> " for url in chart.documented)
        body = f"<p class='note'>Google-side or model-server metric: no local data. {links}</p>"
    else:
        body = "<p class='note'>No data: no running service emitted this chart's metrics.</p>"
    return (
        f"<figure class='chart' data-state='{chart.state}' style='{place}'>"
        f"<figcaption>{html.escape(chart.title)}</figcaption>"
        f"<code>{html.escape(chart.query)}</code>{body}</figure>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1rem; color: #111; background: #fff; }
.mosaic { display: grid; grid-auto-rows: 0.6rem; gap: 0.5rem; margin-bottom: 1.5rem; }
.chart { margin: 0; padding: 0.5rem; border: 1px solid #ccc; border-radius: 0.4rem; overflow: hidden; }
figcaption { font-weight: 600; }
code { display: block; font-size: 0.7rem; color: #444; overflow-wrap: anywhere; margin: 0.2rem 0; }
.bar { display: grid; grid-template-columns: 45% 1fr auto; gap: 0.3rem; align-items: center; font-size: 0.7rem; }
.label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.fill { display: block; height: 0.6rem; background: #2563eb; }
.chart[data-state='external'] { background: #f3f4f6; }
.chart[data-state='nodata'] { background: #fee2e2; }
.note { font-size: 0.75rem; }
"""
