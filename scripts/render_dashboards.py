"""Render every environment's dashboards as one page, filled with the metrics a rehearsal recorded.

    make dashboards                      # records a rehearsal's scrape, then renders it
    python -m scripts.render_dashboards --scrape FILE --out PAGE

Synthesizes the shipped environments (as `cdktf synth` runs main.py), reads each dashboard's
layout, and fills each chart from FILE (Prometheus text; the rehearsal's seam test writes
test-artifacts/rehearsal-metrics.prom). Exit status 1, naming them, when a chart has no data and
names a metric no local process could emit either (analysis/dashboard_page.py says which can't).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.dashboard_page import Dashboard, dashboards, fill, page, recorded
from devtools.deployed_spec import SynthesizedEnvironment

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def synthesized() -> dict[str, dict[str, object]]:
    """Every stack of every shipped environment, as python main.py writes it."""
    return {
        name: stack
        for environment in sorted((ROOT / "environments").glob("*.toml"))
        for name, stack in SynthesizedEnvironment.synthesize(environment).stacks.items()
    }


def render(stacks: dict[str, dict[str, object]], scrape: Path) -> tuple[str, list[Dashboard]]:
    samples = recorded(scrape.read_text())
    boards = [fill(board, samples) for _, stack in sorted(stacks.items()) for board in dashboards(stack)]
    return page(boards, str(scrape.relative_to(ROOT) if scrape.is_relative_to(ROOT) else scrape)), boards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrape", type=Path, default=ARTIFACTS / "rehearsal-metrics.prom")
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "dashboards.html")
    args = parser.parse_args(argv)
    if not args.scrape.exists():
        print(f"{args.scrape}: no recorded scrape; `make dashboards` records one first", file=sys.stderr)
        return 2
    text, boards = render(synthesized(), args.scrape)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    empty = [f"{board.title}: {chart.title}" for board in boards for chart in board.charts if chart.state == "nodata"]
    charts = sum(len(board.charts) for board in boards)
    print(f"{args.out}: {len(boards)} dashboards, {charts} charts, {len(empty)} without data")
    for name in empty:
        print(f"  no data: {name}", file=sys.stderr)
    return 1 if empty else 0


if __name__ == "__main__":
    raise SystemExit(main())
