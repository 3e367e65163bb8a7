"""`python main.py cost ...` and `python main.py advise ...`: offline, from the typed files.

Exit status: 0 done, 2 a mistake in a file or an argument (one line per problem, naming
the file and key), 1 a cost gate that failed (scripts/cost_gate.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid.config import ConfigError, must

if TYPE_CHECKING:
    from analysis.cost.lines import Estimate

ENVIRONMENTS_DIR = Path(__file__).resolve().parent.parent.parent / "environments"


def _workload_args(parser: argparse.ArgumentParser) -> None:
    from analysis.cost.workload import Workload

    defaults = Workload()
    group = parser.add_argument_group(
        "workload (over the environment's [traffic]; every value is an assumption, printed with the estimate)"
    )

    def arg(name: str, kind: type, help: str = "") -> None:
        default = getattr(defaults, name.replace("-", "_"))
        group.add_argument(f"--{name}", type=kind, default=None, help=f"{help} (default: {default})".strip())

    arg("requests-per-day", int)
    arg("input-tokens", int, "input tokens per request")
    arg("output-tokens", int, "output tokens per request")
    group.add_argument(
        "--tokens-per-request",
        type=int,
        default=None,
        help="total tokens per request, split 2:1 input:output (overrides the two above)",
    )
    for name in ("request-seconds", "egress-kb-per-request", "replica-tokens-per-second"):
        arg(name, float)
    for name in ("stream-tokens-per-second", "peak-to-average", "nat-gb-per-month", "registry-gb"):
        arg(name, float)
    arg("page-loads-per-day", int)
    arg("database-used-gb", float)
    arg("external-api", str, "a key of [apis] in the price table")
    arg("vertex-api", str, "a key of [apis] in the price table")
    group.add_argument(
        "--free-tier", action="store_true", help="apply per-billing-account free tiers to this environment"
    )


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The workload values given on the command line (the rest come from [traffic] or defaults)."""
    from pydantic import ValidationError

    from analysis.cost.workload import Workload

    given = {name: getattr(args, name) for name in Workload.model_fields if getattr(args, name, None) is not None}
    if not args.free_tier:
        given.pop("free_tier", None)
    if args.tokens_per_request is not None:
        given["input_tokens"] = args.tokens_per_request * 2 // 3
        given["output_tokens"] = max(1, args.tokens_per_request - given["input_tokens"])
    try:
        Workload(**given)  # the command line's own mistakes, named by their option
    except ValidationError as err:
        problems = [f"--{str(p['loc'][0]).replace('_', '-')}: {must(p['msg'])}" for p in err.errors()]
        raise ConfigError(None, problems) from None
    return given


def estimate_file(path: Path, given: dict[str, Any]) -> Estimate:
    """One environment file's estimate at its own traffic (ConfigError, PriceError on a mistake)."""
    from analysis.cost.estimate import estimate
    from analysis.cost.prices import load_prices
    from analysis.cost.workload import workload_for
    from hybrid.config import load_environment

    env = load_environment(path)
    return estimate(env, load_prices(env.region), workload_for(env, given), source=str(path))


def problem_lines(path: Path, err: Exception) -> list[str]:
    from analysis.cost.prices import PriceError

    if isinstance(err, ConfigError):
        return err.lines
    assert isinstance(err, PriceError)
    return [f"{path}: {err.key}: {err}" if err.key else f"{path}: {err}"]


def _print_prices(paths: list[Path]) -> int:
    """Each region's table once, however many environments use it."""
    from analysis.cost.prices import PriceError, load_prices
    from analysis.cost.report import render_prices
    from hybrid.config import load_environment

    regions: dict[str, None] = {}
    problems: list[str] = []
    for path in paths:
        try:
            regions[load_environment(path).region] = None
        except ConfigError as err:
            problems += problem_lines(path, err)
    try:
        tables = [render_prices(load_prices(region)) for region in regions]
    except PriceError as err:
        problems.append(str(err))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    print("\n\n".join(tables))
    return 0


def cost_main(argv: list[str]) -> int:
    if argv[:1] == ["diff"]:
        from analysis.cost.diff import diff_main

        return diff_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="main.py cost",
        description="Monthly cost estimate per stack and resource, from an environment file and the region's price "
        "table. `main.py cost diff OLD NEW` compares two refs or files.",
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

    from analysis.cost.prices import PriceError
    from analysis.cost.report import render

    paths = args.env or sorted(ENVIRONMENTS_DIR.glob("*.toml"))
    if args.prices:
        return _print_prices(paths)
    try:
        given = _given(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    results, problems = [], []
    for path in paths:
        try:
            results.append(estimate_file(path, given))
        except (ConfigError, PriceError) as err:
            problems += problem_lines(path, err)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
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
