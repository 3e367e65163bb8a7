"""`python main.py cost ...` and `python main.py advise ...`: offline, from the typed files.

Exit status: 0 done, 2 a mistake in a file or an argument (one line per problem, naming
the file and key), 1 a cost gate that failed (scripts/cost_gate.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.config import ConfigError, must

if TYPE_CHECKING:
    from analysis.cost.estimate import Workload

ENVIRONMENTS_DIR = Path(__file__).resolve().parent.parent.parent / "environments"


def _workload_args(parser: argparse.ArgumentParser) -> None:
    from analysis.cost.estimate import Workload

    defaults = Workload()
    group = parser.add_argument_group("workload (every default is an assumption, printed with the estimate)")
    group.add_argument("--requests-per-day", type=int, default=defaults.requests_per_day)
    group.add_argument("--input-tokens", type=int, default=defaults.input_tokens, help="input tokens per request")
    group.add_argument("--output-tokens", type=int, default=defaults.output_tokens, help="output tokens per request")
    group.add_argument(
        "--tokens-per-request",
        type=int,
        default=None,
        help="total tokens per request, split 2:1 input:output (overrides the two above)",
    )
    group.add_argument("--request-seconds", type=float, default=defaults.request_seconds)
    group.add_argument("--page-loads-per-day", type=int, default=None)
    group.add_argument("--egress-kb-per-request", type=float, default=defaults.egress_kb_per_request)
    group.add_argument("--replica-tokens-per-second", type=float, default=defaults.replica_tokens_per_second)
    group.add_argument("--stream-tokens-per-second", type=float, default=defaults.stream_tokens_per_second)
    group.add_argument("--peak-to-average", type=float, default=defaults.peak_to_average)
    group.add_argument("--nat-gb-per-month", type=float, default=defaults.nat_gb_per_month)
    group.add_argument("--database-used-gb", type=float, default=None)
    group.add_argument("--registry-gb", type=float, default=defaults.registry_gb)
    group.add_argument("--external-api", default=defaults.external_api, help="a key of [apis] in the price table")
    group.add_argument("--vertex-api", default=defaults.vertex_api, help="a key of [apis] in the price table")
    group.add_argument(
        "--free-tier", action="store_true", help="apply per-billing-account free tiers to this environment"
    )


def _workload(args: argparse.Namespace) -> Workload:
    from pydantic import ValidationError

    from analysis.cost.estimate import Workload

    values = {
        "requests_per_day": args.requests_per_day,
        "input_tokens": args.input_tokens,
        "output_tokens": args.output_tokens,
        "request_seconds": args.request_seconds,
        "page_loads_per_day": args.page_loads_per_day,
        "egress_kb_per_request": args.egress_kb_per_request,
        "replica_tokens_per_second": args.replica_tokens_per_second,
        "stream_tokens_per_second": args.stream_tokens_per_second,
        "peak_to_average": args.peak_to_average,
        "nat_gb_per_month": args.nat_gb_per_month,
        "database_used_gb": args.database_used_gb,
        "registry_gb": args.registry_gb,
        "external_api": args.external_api,
        "vertex_api": args.vertex_api,
        "free_tier": args.free_tier,
    }
    if args.tokens_per_request is not None:
        values["input_tokens"] = args.tokens_per_request * 2 // 3
        values["output_tokens"] = max(1, args.tokens_per_request - values["input_tokens"])
    try:
        return Workload(**values)
    except ValidationError as err:
        problems = [f"--{'-'.join(str(p['loc'][0]).split('_'))}: {must(p['msg'])}" for p in err.errors()]
        raise ConfigError(None, problems) from None


def cost_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="main.py cost",
        description="Monthly cost estimate per stack and resource, from an environment file and the region's price table.",
    )
    parser.add_argument(
        "--env",
        type=Path,
        action="append",
        metavar="FILE",
        help="environment file (repeatable; default: every file in environments/)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (for CI)")
    parser.add_argument("--prices", action="store_true", help="print the price table(s) with each figure's source")
    _workload_args(parser)
    args = parser.parse_args(argv)

    from analysis.cost.estimate import estimate
    from analysis.cost.prices import PriceError, load_prices
    from analysis.cost.report import render, render_prices
    from hybrid.config import load_environment

    paths = args.env or sorted(ENVIRONMENTS_DIR.glob("*.toml"))
    try:
        workload = _workload(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    results, problems = [], []
    for path in paths:
        try:
            env = load_environment(path)
            prices = load_prices(env.region)
            if args.prices:
                print(render_prices(prices))
                continue
            results.append(estimate(env, prices, workload, source=str(path)))
        except ConfigError as err:
            problems += err.lines
        except PriceError as err:
            problems.append(f"{path}: {err.key}: {err}" if err.key else f"{path}: {err}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.prices:
        return 0
    if args.json:
        payload = [r.to_json() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        print("\n\n".join(render(r) for r in results))
    return 0


def advise_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="main.py advise",
        description="Placement per layer from a workload profile, with reasons and an environment-file fragment.",
    )
    parser.add_argument("--profile", type=Path, required=True, metavar="FILE", help="workload profile (TOML)")
    parser.add_argument("--json", action="store_true", help="print JSON (for CI)")
    args = parser.parse_args(argv)

    from analysis.advice import advise, load_profile, render_advice

    try:
        profile = load_profile(args.profile)
        advice = advise(profile, source=args.profile)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(advice.to_json(), indent=2) if args.json else render_advice(advice))
    return 0
