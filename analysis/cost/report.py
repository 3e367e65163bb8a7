"""Print an estimate as a bill-review table (Infracost's breakdown is the model for its form)."""

from __future__ import annotations

from typing import Any

from analysis.cost.lines import Estimate, LineItem
from analysis.cost.prices import Allowance, ApiPrice, PriceTable, RungPrice

WIDTH = 112
# Beside a cost whose price no official page or billing data confirms.
MARKS = {"third party": " †", "none found": " *"}


def money(value: float | None) -> str:
    if value is None:
        return "not priced"
    sign = "-" if value < 0 else ""
    value = abs(value)
    return f"{sign}${value:,.2f}" if value >= 0.01 or value == 0 else f"{sign}${value:.4f}"


def unit_price(value: float) -> str:
    """A price as money at full precision, never in scientific notation: $0.000273973, $74.40."""
    text = f"{value:,.9f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def _quantity(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value else "0"


def render(est: Estimate) -> str:
    out = [
        f"Project: {est.environment}" + (f" ({est.source})" if est.source else "") + f" · {est.region}"
        f" · prices {est.prices_file}, checked {est.prices_checked}",
        "",
        f" {'Name':<64} {'Monthly qty':>13}  {'Unit':<18} {'Monthly cost':>12}",
    ]
    stacks: dict[str, list[LineItem]] = {}
    for item in est.items:
        stacks.setdefault(item.stack, []).append(item)
    for stack, items in stacks.items():
        out += ["", f" {stack}", *_stack_tree(items)]
        out.append(f" {'':<64} {'':>13}  {'stack total':<18} {money(sum(i.monthly_usd or 0 for i in items)):>12}")
    out += _totals(est)
    if est.unit_economics:
        out += _unit_economics(est.unit_economics)
    if est.ladder:
        out += ["", " The GPU ladder's rungs (each as if every replica ran on it; the node line above is on-demand)"]
        out += [f"  - {rung['rung']}: {rung['text']}" for rung in est.ladder]
    out += ["", " Assumptions"] + [f"  - {a}" for a in est.assumptions]
    if est.warnings:
        out += ["", " Warnings"] + [f"  ! {w}" for w in est.warnings]
    return "\n".join(out)


def _stack_tree(items: list[LineItem]) -> list[str]:
    """One stack's resources, each with its line items beneath."""
    out: list[str] = []
    resources: dict[str, list[LineItem]] = {}
    for item in items:
        resources.setdefault(item.resource, []).append(item)
    for r_index, (resource, parts) in enumerate(resources.items()):
        last_resource = r_index == len(resources) - 1
        branch = "└─" if last_resource else "├─"
        stem = "   " if last_resource else "│  "
        if len(parts) == 1 and not parts[0].component:
            item = parts[0]
            out.append(f" {branch} {resource:<61} {'':>13}  {'':<18} {money(item.monthly_usd):>12}")
            out.append(f" {stem}   {item.note}")
            continue
        out.append(f" {branch} {resource}")
        for p_index, item in enumerate(parts):
            twig = "└─" if p_index == len(parts) - 1 else "├─"
            mark = MARKS.get(item.source_kind or "", "") if item.confirmed is False else ""
            name = (item.component or item.note)[:58]
            unit = (item.unit or "")[:18]
            out.append(
                f" {stem}{twig} {name:<58} {_quantity(item.quantity):>13}  {unit:<18} {money(item.monthly_usd) + mark:>12}"
            )
    return out


def _totals(est: Estimate) -> list[str]:
    out = ["", " " + "─" * (WIDTH - 2), f" {'OVERALL TOTAL (monthly)':<97} {money(est.total):>12}"]
    if est.budget_usd is not None:
        share = est.total / est.budget_usd * 100 if est.budget_usd else float("inf")
        out.append(f" {'budget ([budget] amount_usd)':<97} {money(est.budget_usd):>12}")
        out.append(f" {'estimate / budget':<97} {share:>11.0f}%")
    out += [
        "",
        f" {MARKS['third party']} third-party figure only; {MARKS['none found']} no source found (from memory): see `cost --prices`",
    ]
    not_priced = [i for i in est.items if i.monthly_usd is None]
    if not_priced:
        out.append(f" {len(not_priced)} resource(s) not priced (usage-based or absent from the table), listed above")
    return out


def _unit_economics(ue: dict[str, Any]) -> list[str]:
    out = ["", " Inference unit economics", ""]
    out.append(f" {'':<44} {'per request':>14} {'per 1K tokens':>14} {'monthly':>12} {'break-even req/day':>20}")
    sh = ue["self_hosted"]
    out.append(
        f" {'self-hosted (' + sh['covers'] + ')':<44} {money(sh['per_request_usd']):>14} {money(sh['per_1k_tokens_usd']):>14}"
        f" {money(sh['monthly_usd']):>12} {'':>20}"
    )
    for key in ("vertex", "external"):
        api = ue[key]
        mark = "" if api["confirmed"] else MARKS.get(api["source_kind"], "")
        be = api["break_even_requests_per_day"]
        out.append(
            f" {api['name'] + mark:<44} {money(api['per_request_usd']):>14} {money(api['per_1k_tokens_usd']):>14}"
            f" {money(api['monthly_usd']):>12} {('' if be is None else f'{be:,.0f}'):>20}"
        )
    out.append("")
    out.append(
        f" At {ue['requests_per_day']:,} requests/day of {ue['tokens_per_request']:,} tokens. Break-even: the volume at which the API's"
        " bill equals the self-hosted monthly cost"
    )
    if "max_requests_per_day" in sh:
        out.append(
            f" Self-hosted capacity at max_replicas (peak-adjusted): about {sh['max_requests_per_day']:,.0f} requests/day"
        )
    return out


def render_prices(table: PriceTable) -> str:
    out = [f"{table.path.name}: region {table.region}, checked {table.table.checked}", ""]
    for key, price in table.entries():
        if isinstance(price, ApiPrice):
            figure = f"{unit_price(price.input_usd)} in / {unit_price(price.output_usd)} out per {price.unit}"
        elif isinstance(price, Allowance):
            figure = f"{_quantity(price.amount)} {price.unit}"
        elif isinstance(price, RungPrice):
            figure = f"{price.low:g}-{price.high:g} {price.unit}"
        else:
            figure = f"{unit_price(price.usd)} / {price.unit}"
        status = ("confirmed: " if price.confirmed else "NOT confirmed: ") + price.source_kind
        out.append(f"{key:<42} {figure:<44} {status:<34} {price.source}")
        if isinstance(price, ApiPrice) and price.retires:
            out.append(f"{'':<42} retires {price.retires} ({price.retires_source})")
        if price.note:
            out.append(f"{'':<42} {price.note}")
    return "\n".join(out)
