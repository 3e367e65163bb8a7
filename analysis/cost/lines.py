"""Line items of an estimate, the estimate itself, and the collector each layer's pricing adds to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analysis.cost.prices import PriceTable, SourceKind
from hybrid.config import Environment

# Bumped when a key of the JSON output changes meaning or goes away (new keys keep it).
SCHEMA_VERSION = 2


@dataclass
class LineItem:
    layer: str
    stack: str
    resource: str
    component: str
    quantity: float | None
    unit: str
    monthly_usd: float | None  # None: not priced (see note)
    price_key: str | None = None
    unit_usd: float | None = None
    confirmed: bool | None = None
    source_kind: SourceKind | None = None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "stack": self.stack,
            "resource": self.resource,
            "component": self.component,
            "quantity": None if self.quantity is None else round(self.quantity, 4),
            "unit": self.unit,
            "unit_usd": self.unit_usd,
            "monthly_usd": None if self.monthly_usd is None else round(self.monthly_usd, 2),
            "price_key": self.price_key,
            "price_confirmed": self.confirmed,
            "price_source_kind": self.source_kind,
            "note": self.note,
        }


@dataclass
class Estimate:
    environment: str
    source: str
    region: str
    prices_checked: str
    prices_file: str
    items: list[LineItem]
    assumptions: list[str]
    warnings: list[str] = field(default_factory=list)
    unit_economics: dict[str, Any] | None = None
    budget_usd: float | None = None
    # The GPU nodes' monthly cost on each rung of [inference.gke] obtain (analysis.cost.ladder).
    ladder: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(sum(item.monthly_usd or 0 for item in self.items), 2)

    def stack_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.stack] = totals.get(item.stack, 0.0) + (item.monthly_usd or 0)
        return {stack: round(total, 2) for stack, total in totals.items()}

    def subtotal(self, stacks: tuple[str, ...]) -> float:
        return round(sum(item.monthly_usd or 0 for item in self.items if item.stack in stacks), 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "environment": self.environment,
            "source": self.source,
            "region": self.region,
            "currency": "USD",
            "prices": {"file": self.prices_file, "checked": self.prices_checked},
            "monthly_total_usd": self.total,
            "stacks": self.stack_totals(),
            "items": [item.as_json() for item in self.items],
            "not_priced": [f"{i.stack}: {i.resource}: {i.note}" for i in self.items if i.monthly_usd is None],
            "assumptions": self.assumptions,
            "warnings": self.warnings,
            "unit_economics": self.unit_economics,
            "budget_usd": self.budget_usd,
            "ladder": self.ladder,
        }


class Lines:
    """Collects line items, each priced from the table by key."""

    def __init__(self, env: Environment, prices: PriceTable) -> None:
        self.env, self.prices = env, prices
        self.items: list[LineItem] = []
        self.warnings: list[str] = []

    def add(self, layer: str, resource: str, component: str, quantity: float, key: str, note: str = "") -> float:
        price = self.prices.price(key)
        return self.add_usd(layer, resource, component, quantity, price.unit, price.usd, key, price, note)

    def add_usd(
        self,
        layer: str,
        resource: str,
        component: str,
        quantity: float,
        unit: str,
        unit_usd: float,
        key: str,
        source: Any,
        note: str = "",
    ) -> float:
        """A line at a given unit price; ``source`` is the table entry that price comes from."""
        monthly = quantity * unit_usd
        self.items.append(
            LineItem(
                layer,
                self.env.stack_id(layer),
                resource,
                component,
                quantity,
                unit,
                monthly,
                key,
                unit_usd,
                source.confirmed,
                source.source_kind,
                note,
            )
        )
        return monthly

    def free(self, layer: str, resource: str, component: str, note: str) -> None:
        """A resource that costs nothing here, said so rather than left out."""
        self.items.append(LineItem(layer, self.env.stack_id(layer), resource, component, None, "", 0.0, note=note))

    def unpriced(self, layer: str, resource: str, why: str) -> None:
        self.items.append(LineItem(layer, self.env.stack_id(layer), resource, "", None, "", None, note=why))
