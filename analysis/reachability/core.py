"""Verdicts, CIDR helpers and the constants the edges share."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard, TypeVar

from hybrid.config.inference import CLOUD_RUN_SPILL
from hybrid.topology import SPILL_SECTION

Net = ipaddress.IPv4Network
T = TypeVar("T")
# A block of the synthesized JSON, as json.loads gives it.
Json = dict[str, Any]

# ------------------------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class Step:
    ok: bool
    text: str


@dataclass(frozen=True)
class Verdict:
    edge: str
    steps: tuple[Step, ...]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)


class Chain:
    """The reasons gathered along one edge; each check records why it holds or not."""

    def __init__(self, edge: str) -> None:
        self.edge = edge
        self.steps: list[Step] = []

    def check(self, ok: bool, text: str) -> bool:
        self.steps.append(Step(bool(ok), text))
        return bool(ok)

    def present(self, found: T | None, text: str) -> TypeGuard[T]:
        """``check(found is not None, text)``, telling the type checker that ``found`` is there."""
        return self.check(found is not None, text)

    def ok(self, text: str) -> None:
        self.check(True, text)

    def fail(self, text: str) -> bool:
        return self.check(False, text)

    def verdict(self) -> Verdict:
        return Verdict(self.edge, tuple(self.steps))


class Unresolved(Exception):
    """A reference or resource the check needs is not in the synthesized stacks."""


# ------------------------------------------------------------------------------------------
# CIDR helpers


def net(text: str) -> Net:
    return ipaddress.IPv4Network(str(text), strict=False)


def host(address: str) -> Net:
    return ipaddress.IPv4Network(f"{address}/32")


def within(inner: Net, outers: Iterable[Net]) -> bool:
    return any(inner.subnet_of(outer) for outer in outers)


def overlapping(inner: Net, outers: Iterable[Net]) -> bool:
    return any(inner.overlaps(outer) for outer in outers)


ANYWHERE = net("0.0.0.0/0")
RFC1918 = (net("10.0.0.0/8"), net("172.16.0.0/12"), net("192.168.0.0/16"))
RFC6598 = net("100.64.0.0/10")
# The Private Google Access VIPs (cloud.google.com/vpc/docs/configure-private-google-access#domain-options):
# private.googleapis.com 199.36.153.8/30, restricted.googleapis.com 199.36.153.4/30.
PRIVATE_GOOGLE_ACCESS_VIPS = (net("199.36.153.8/30"), net("199.36.153.4/30"))
# What egress PRIVATE_RANGES_ONLY sends through a Serverless VPC Access connector: internal
# addresses only, RFC 1918 and RFC 6598 (cloud.google.com/run/docs/configuring/vpc-connectors#manage,
# and the API: "Only private IP ranges are routed through the VPC connector",
# cloud.google.com/run/docs/reference/rest/v2/VpcAccess#vpcegress). run.app, even resolved to
# 199.36.153.8/30 by a private zone, is not among them: it leaves Cloud Run directly.
CONNECTOR_PRIVATE_RANGES = (*RFC1918, RFC6598)
# Direct VPC egress with PRIVATE_RANGES_ONLY also sends the Private Google Access VIPs into the
# VPC, which is how a private DNS zone makes Google APIs and run.app internal
# (cloud.google.com/run/docs/configuring/networking-best-practices, "Internal traffic to a Google
# API": private-ranges-only, Private Google Access, and DNS mapping to 199.36.153.8/30 or /4/30).
DIRECT_VPC_PRIVATE_RANGES = (*CONNECTOR_PRIVATE_RANGES, *PRIVATE_GOOGLE_ACCESS_VIPS)

# The layers main.py synthesizes for each environment: stack ids are <env>-<layer>.
LAYERS = ("network", "registry", "database", "cluster", "inference", "services", "workers", "workers-k8s", "edge")
HTTPS = 443
POSTGRES = 5432  # libpq's default port when PGPORT is unset
# Memorystore for Redis with in-transit encryption listens on 6378
# (cloud.google.com/memorystore/docs/redis/enabling-in-transit-encryption).
REDIS_TLS = 6378


# ------------------------------------------------------------------------------------------
# Callers: what an edge needs of whoever makes the call


@dataclass(frozen=True)
class Caller:
    name: str
    stack_id: str  # where its environment's references are resolved
    env: Mapping[str, Any]
    identity: str  # its Google service account, as a principal
    secrets: Mapping[str, str] = field(default_factory=dict, kw_only=True)  # variables from Secret Manager -> secret

    def json(self, c: Chain, name: str) -> Any:
        return env_json(c, self.name, self.env, name)


def env_json(c: Chain, owner: str, env: Mapping[str, Any], name: str) -> Any:
    """The JSON in ``owner``'s variable ``name`` (BACKENDS, ROUTES), or None with the reason recorded."""
    try:
        return json.loads(env[name])
    except (KeyError, TypeError, ValueError):
        c.fail(f"{owner}'s {name} is missing or not JSON")
        return None


@dataclass(frozen=True)
class EnvironmentFacts:
    """What the environment file says and the JSON cannot: where and which model is self-hosted."""

    name: str
    placement: str  # "gke" or "cloud_run"
    self_hosted_model: str
    workers: bool = False  # [workers] enabled: the batch workers tier exists
    redis: bool = False  # [redis] enabled: the gateway's rate limit is kept in Memorystore
    edge: bool = False  # [edge] enabled: the public services are reached through the load balancer only
    egress: Literal["direct", "connector"] = "direct"  # [network] egress: how Cloud Run enters the VPC
    regions: tuple[str, ...] = ()  # [edge] regions beside the environment's own: the orchestrator runs there too
    spill: bool = False  # [inference] spill_to = "cloud_run": a model server on a Cloud Run GPU beside the GKE pool

    @property
    def features(self) -> frozenset[str]:
        """What edges.Edge.needs is matched against: the placement and the enabled tiers."""
        tiers = {"workers": self.workers, "redis": self.redis, SPILL_SECTION: self.spill}
        return frozenset({self.placement, *(tier for tier, enabled in tiers.items() if enabled)})

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any]) -> EnvironmentFacts:
        """From an environments/<env>.toml as parsed by tomllib (hybrid/config validates it)."""
        inference = raw.get("inference") or {}
        placement = inference.get("placement", "gke")  # InferenceSettings' default
        workers = bool((raw.get("workers") or {}).get("enabled", False))  # WorkersTier' default
        redis = bool((raw.get("redis") or {}).get("enabled", False))  # RedisSettings' default
        edge = bool((raw.get("edge") or {}).get("enabled", False))  # EdgeSettings' default
        egress = (raw.get("network") or {}).get("egress", "direct")  # NetworkSettings' default
        model = (inference.get(placement) or {}).get("model", "")
        further = tuple(r for r in (raw.get("edge") or {}).get("regions", ()) if r != raw.get("region"))
        spill = inference.get("spill_to") == CLOUD_RUN_SPILL
        return cls(
            raw["name"], placement, model, workers, redis, edge=edge, egress=egress, regions=further, spill=spill
        )
