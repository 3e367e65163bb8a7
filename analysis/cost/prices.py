"""The price table of a region (analysis/cost/prices/<region>.toml), typed and looked up strictly.

Why strictly: an estimate that quietly prices a resource at zero because a figure is
missing is worse than no estimate. A region without a table, a machine type or a price
key that the table does not hold is a ``PriceError`` naming the table and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PRICES_DIR = Path(__file__).resolve().parent / "prices"


class PriceError(Exception):
    """A price the estimate needs is not in the table: one line naming file and key.

    ``key`` is the environment-file key whose value has no price (e.g. ``region``), if any.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The kinds of source a figure was read on, strongest first (docs/cost.md).
SourceKind = Literal["official copy", "billing-catalog data", "third party", "none found"]
CONFIRMING: tuple[SourceKind, ...] = ("official copy", "billing-catalog data")


class _Sourced(_Strict):
    unit: str
    source: str = Field(pattern=r"^https://")
    checked: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    confirmed: bool
    source_kind: SourceKind
    note: str = ""

    @model_validator(mode="after")
    def _kind_confirms(self) -> _Sourced:
        # A figure only a third party (or memory) gives stays unconfirmed, so outputs mark it.
        if self.confirmed != (self.source_kind in CONFIRMING):
            raise ValueError(f"confirmed = {self.confirmed} does not fit source_kind = {self.source_kind!r}")
        return self


class Price(_Sourced):
    usd: float = Field(ge=0)


class Allowance(_Sourced):
    """A free-tier quantity (not money)."""

    amount: float = Field(ge=0)


class Machine(Price):
    vcpus: int = Field(gt=0)
    memory_gb: float = Field(gt=0)
    gpus: int = Field(ge=0)
    gpu_type: str


class ApiPrice(_Sourced):
    input_usd: float = Field(ge=0)
    output_usd: float = Field(ge=0)
    # The model's retirement date, where its vendor publishes one, and the page that says so.
    retires: date | None = None
    retires_source: str | None = Field(default=None, pattern=r"^https://")


class RungPrice(_Sourced):
    """What a rung of the GPU ladder pays, as a share of the on-demand node price: a range where the
    source gives one (Spot's discount varies), one figure where it does not."""

    low: float = Field(gt=0, le=1)
    high: float = Field(gt=0, le=1)


class _Table(_Strict):
    region: str
    currency: str
    checked: str
    hours_per_month: float = Field(gt=0)
    cloud_run: dict[str, Price]
    free_tiers: dict[str, Allowance]
    network: dict[str, Price]
    gke: dict[str, Price]
    machines: dict[str, Machine]
    redis: dict[str, Price]
    cloud_sql: dict[str, Price]
    storage: dict[str, Price]
    apis: dict[str, ApiPrice]
    # Keyed by rung (hybrid.catalog.RUNG_ORDER), or by rung_<gpu type> where the GPU changes it.
    rungs: dict[str, RungPrice] = Field(default_factory=dict)
    # The observability layer's (additive: a table without them still loads).
    monitoring: dict[str, Price] = Field(default_factory=dict)


# Sections of Price figures, looked up by ``section.name``; machines, free tiers and APIs have their own look-ups.
PRICE_SECTIONS = ("cloud_run", "network", "gke", "redis", "cloud_sql", "storage", "monitoring")
# How far ahead of a model's retirement the estimate warns.
RETIREMENT_NOTICE = timedelta(days=90)


def retirement_warning(name: str, api: ApiPrice, today: date) -> str | None:
    """A warning when a model API is past, or within RETIREMENT_NOTICE of, its retirement date."""
    if api.retires is None:
        return None
    if today > api.retires:
        return f"{name}: the model retired on {api.retires} ({api.retires_source}); choose a current model"
    if today + RETIREMENT_NOTICE >= api.retires:
        return f"{name}: the model retires on {api.retires} ({api.retires_source}); plan the move now"
    return None


@dataclass(frozen=True)
class PriceTable:
    path: Path
    table: _Table

    @property
    def region(self) -> str:
        return self.table.region

    @property
    def hours_per_month(self) -> float:
        return self.table.hours_per_month

    @property
    def seconds_per_month(self) -> float:
        return self.table.hours_per_month * 3600

    def price(self, key: str) -> Price:
        """``section.name``, e.g. ``cloud_run.instance_cpu``."""
        section, _, name = key.partition(".")
        group = getattr(self.table, section) if section in PRICE_SECTIONS else None
        if group is None or name not in group:
            raise PriceError(f"{self._where()}: no price {key!r}; the estimate needs it")
        price: Price = group[name]
        return price

    def usd(self, key: str) -> float:
        return self.price(key).usd

    def free_tier(self, name: str) -> Allowance:
        if name not in self.table.free_tiers:
            raise PriceError(f"{self._where()}: no free tier {name!r}; the estimate needs it")
        return self.table.free_tiers[name]

    def machine(self, name: str) -> Machine:
        if name not in self.table.machines:
            raise PriceError(
                f"{self._where()}: no price for machine type {name!r}; priced machines: "
                f"{', '.join(sorted(self.table.machines))}"
            )
        return self.table.machines[name]

    def machines_for(self, gpu_type: str, gpus: int) -> list[tuple[str, Machine]]:
        """Priced machines with exactly ``gpus`` of ``gpu_type``, smallest first."""
        found = [(n, m) for n, m in self.table.machines.items() if m.gpu_type == gpu_type and m.gpus == gpus]
        return sorted(found, key=lambda item: (item[1].vcpus, item[1].memory_gb))

    def api(self, name: str) -> ApiPrice:
        if name not in self.table.apis:
            raise PriceError(
                f"{self._where()}: no price for model API {name!r}; priced APIs: {', '.join(sorted(self.table.apis))}"
            )
        return self.table.apis[name]

    def rung(self, rung: str, gpu_type: str) -> tuple[str, RungPrice] | None:
        """The share of on-demand ``rung`` pays for ``gpu_type`` nodes, and its key; None when the table has none."""
        for key in (f"{rung}_{gpu_type}", rung):
            if key in self.table.rungs:
                return f"rungs.{key}", self.table.rungs[key]
        return None

    def entries(self) -> list[tuple[str, Price | Allowance | ApiPrice | RungPrice]]:
        """Every figure with its key, for printing the table and its sources."""
        out: list[tuple[str, Price | Allowance | ApiPrice | RungPrice]] = []
        for section in (*PRICE_SECTIONS, "machines", "free_tiers", "apis", "rungs"):
            out += [(f"{section}.{name}", price) for name, price in getattr(self.table, section).items()]
        return out

    def _where(self) -> str:
        return _display(self.path)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def available_regions(directory: Path = PRICES_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_prices(region: str, directory: Path = PRICES_DIR) -> PriceTable:
    path = directory / f"{region}.toml"
    if not path.is_file():
        raise PriceError(
            f"no price table for this region ({_display(path)} does not exist); "
            f"tables exist for: {', '.join(available_regions(directory)) or 'none'}",
            key=f"region = {region!r}",
        )
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
        table = _Table.model_validate(raw)
    except tomllib.TOMLDecodeError as err:
        raise PriceError(f"{_display(path)}: not valid TOML: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise PriceError(f"{_display(path)}: {key}: {first['msg']}") from None
    if table.region != region:
        raise PriceError(f"{_display(path)}: region = {table.region!r}, but the file is named for {region!r}")
    return PriceTable(path, table)
