"""Flag a change that raises an environment's monthly estimate by more than a set percent.

    python -m scripts.cost_gate                                  # prod against policy/cost-baseline-prod.json, 10%
    python -m scripts.cost_gate --max-increase-percent 5
    python -m scripts.cost_gate --update                         # accept the current estimate as the baseline

The baseline is committed: raising it is a reviewed change like any other. Exit status: 0 within
the limit, 1 over it (each stack's change printed), 2 a mistake in a file or an argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analysis.cost.estimate import estimate
from analysis.cost.prices import PriceError, load_prices
from analysis.cost.workload import workload_for
from hybrid.config import ConfigError, load_environment

ROOT = Path(__file__).resolve().parent.parent


def current(env_path: Path) -> dict[str, Any]:
    env = load_environment(env_path)
    # The environment's own [traffic]: a change to it is a change to the forecast, gated like the rest.
    est = estimate(env, load_prices(env.region), workload_for(env), source=str(env_path))
    return {"environment": env.name, "monthly_total_usd": est.total, "stacks": est.stack_totals()}


def compare(baseline: dict[str, Any], now: dict[str, Any], max_increase_percent: float) -> tuple[bool, list[str]]:
    before, after = baseline["monthly_total_usd"], now["monthly_total_usd"]
    change = (after - before) / before * 100 if before else (0.0 if after == before else float("inf"))
    lines = [
        f"{now['environment']}: monthly estimate ${after:,.2f} against the baseline ${before:,.2f} ({change:+.1f}%, limit +{max_increase_percent:g}%)"
    ]
    for stack in sorted(set(baseline["stacks"]) | set(now["stacks"])):
        a, b = baseline["stacks"].get(stack, 0.0), now["stacks"].get(stack, 0.0)
        if round(a, 2) != round(b, 2):
            lines.append(f"  {stack}: ${a:,.2f} -> ${b:,.2f} ({b - a:+,.2f})")
    ok = change <= max_increase_percent
    if not ok:
        lines.append(
            f"COST INCREASE over {max_increase_percent:g}%: review it, then accept with `python -m scripts.cost_gate --update`"
        )
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", type=Path, default=ROOT / "environments" / "prod.toml")
    parser.add_argument("--baseline", type=Path, default=ROOT / "policy" / "cost-baseline-prod.json")
    parser.add_argument("--max-increase-percent", type=float, default=10.0)
    parser.add_argument("--update", action="store_true", help="write the current estimate as the baseline")
    args = parser.parse_args(argv)
    try:
        now = current(args.env)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    except PriceError as err:
        print(f"{args.env}: {err.key}: {err}" if err.key else f"{args.env}: {err}", file=sys.stderr)
        return 2
    if args.update:
        args.baseline.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
        print(f"{args.baseline}: baseline set to ${now['monthly_total_usd']:,.2f}")
        return 0
    try:
        baseline = json.loads(args.baseline.read_text())
    except FileNotFoundError:
        print(f"{args.baseline}: no baseline; create it with --update", file=sys.stderr)
        return 2
    ok, lines = compare(baseline, now, args.max_increase_percent)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
