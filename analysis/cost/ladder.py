"""What the GPU nodes cost on each rung of an obtainability ladder ([inference.gke] obtain).

Each rung is priced as a share of the on-demand node price (the table's [rungs]), as if every
replica ran on it: which rung a replica lands on depends on capacity the day it is placed,
which no estimate knows. A ladder costs at most its dearest rung and at least its cheapest.
"""

from __future__ import annotations

from typing import Any

from analysis.cost.prices import PriceTable


def rung_costs(prices: PriceTable, obtain: list[str], gpu_type: str, on_demand_usd: float) -> list[dict[str, Any]]:
    """Per rung: its monthly range for nodes that cost ``on_demand_usd`` a month on demand, and the price's source."""
    out: list[dict[str, Any]] = []
    for rung in obtain:
        found = prices.rung(rung, gpu_type)
        if found is None:
            out.append(
                {"rung": rung, "low_usd": None, "high_usd": None, "text": f"not priced: no rungs.{rung} in the table"}
            )
            continue
        key, share = found
        low, high = on_demand_usd * share.low, on_demand_usd * share.high
        span = f"${low:,.2f}" if low == high else f"${low:,.2f} to ${high:,.2f}"
        mark = "" if share.confirmed else f" ({share.source_kind}: verify)"
        out.append(
            {
                "rung": rung,
                "low_usd": low,
                "high_usd": high,
                "price_key": key,
                "confirmed": share.confirmed,
                "source_kind": share.source_kind,
                "text": f"{span} a month{mark}; {share.note or share.source}",
            }
        )
    return out


def ladder_range(rungs: list[dict[str, Any]]) -> tuple[float, float] | None:
    """The cheapest and the dearest a ladder's nodes can cost a month; None when a rung is not priced."""
    if any(rung["low_usd"] is None for rung in rungs):
        return None
    return min(rung["low_usd"] for rung in rungs), max(rung["high_usd"] for rung in rungs)
