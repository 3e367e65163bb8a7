"""`python main.py cost diff OLD NEW`: what a change does to the monthly estimate, as a
markdown table fit for a pull-request comment.

OLD and NEW are two environment files, or two git refs (then each environment file, or those
given with --env, is read at both refs). Both sides are priced with today's code and price
table, so the diff shows what the environment change costs, not what a price change does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from analysis.cost.lines import Estimate, LineItem
from hybrid.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent


def _key(item: LineItem) -> tuple[str, str, str]:
    # By layer, not stack id: two environments' stacks carry different names.
    return item.layer, item.resource, item.component if item.price_key is None else item.price_key


def _row(before: LineItem | None, after: LineItem | None) -> tuple[str, str, str, float, float]:
    item = after or before
    assert item is not None
    label = item.component or item.note
    return (
        item.layer,
        item.resource,
        label,
        (before.monthly_usd or 0) if before else 0.0,
        (after.monthly_usd or 0) if after else 0.0,
    )


def changes(old: Estimate, new: Estimate) -> list[tuple[str, str, str, float, float]]:
    """(layer, resource, component, before, after) of every line whose monthly cost differs."""
    olds = {_key(i): i for i in old.items}
    news = {_key(i): i for i in new.items}
    rows = [_row(olds.get(k), news.get(k)) for k in list(olds) + [k for k in news if k not in olds]]
    return [row for row in rows if round(row[3], 2) != round(row[4], 2)]


def _usd(value: float) -> str:
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def render_diff(old: Estimate, new: Estimate, old_label: str, new_label: str) -> str:
    delta = new.total - old.total
    share = f" ({delta / old.total * 100:+.1f}%)" if old.total else ""
    out = [
        f"### Monthly cost: {new.environment}",
        "",
        f"{_usd(old.total)} ({old_label}) → {_usd(new.total)} ({new_label}): **{'+' if delta >= 0 else ''}{_usd(delta)}**{share}",
        "",
    ]
    rows = changes(old, new)
    if not rows:
        return "\n".join([*out, "No line of the estimate changes."])
    out += ["| layer | resource | line | before | after | change |", "|---|---|---|--:|--:|--:|"]
    for layer, resource, component, before, after in rows:
        cells = (layer, resource, component, _usd(before), _usd(after), _usd(after - before))
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    out += ["", f"Prices: {new.prices_file}, checked {new.prices_checked}; traffic from each side's [traffic]."]
    return "\n".join(out)


def _at_ref(ref: str, path: Path, into: Path) -> Path:
    """The environment file as it is at a git ref, written under ``into`` with its own name."""
    try:
        rel = path.resolve().relative_to(ROOT)
    except ValueError:
        raise ConfigError(None, [f"{path}: not in this repository, so not at any git ref"]) from None
    shown = subprocess.run(
        ["git", "show", f"{ref}:{rel.as_posix()}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        raise ConfigError(None, [f"{ref}:{rel}: {shown.stderr.strip() or 'not found'}"])
    target = into / ref.replace("/", "_") / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(shown.stdout)
    return target


def _pairs(args: argparse.Namespace, tmp: Path) -> list[tuple[Path, Path]]:
    old, new = Path(args.old), Path(args.new)
    if old.is_file() and new.is_file():
        return [(old, new)]
    from analysis.cost.cli import ENVIRONMENTS_DIR

    paths = args.env or sorted(ENVIRONMENTS_DIR.glob("*.toml"))
    return [(_at_ref(args.old, p, tmp), _at_ref(args.new, p, tmp)) for p in paths]


def diff_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="main.py cost diff",
        description="The monthly estimate's changes between two environment files or two git refs, as markdown.",
    )
    parser.add_argument("old", help="environment file, or git ref (e.g. origin/main)")
    parser.add_argument("new", help="environment file, or git ref (e.g. HEAD)")
    parser.add_argument("--env", type=Path, action="append", metavar="FILE", help="with refs: the file(s) to compare")
    args = parser.parse_args(argv)

    from analysis.cost.cli import estimate_file, problem_lines
    from analysis.cost.prices import PriceError

    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pairs = _pairs(args, Path(tmp))
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 2
        for old_path, new_path in pairs:
            try:
                before, after = estimate_file(old_path, {}), estimate_file(new_path, {})
            except (ConfigError, PriceError) as err:
                print("\n".join(problem_lines(new_path, err)), file=sys.stderr)
                return 2
            out.append(render_diff(before, after, args.old, args.new))
    print("\n\n".join(out))
    return 0
