"""Typed, immutable settings for one environment, loaded from environments/<env>.toml.

Each domain's settings check themselves (network, database, cluster, services, inference,
budget); the checks here span domains. Everything GCP would refuse at deploy time is refused
at synth time, with a message naming the file, the key and what is allowed.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated

from pydantic import Field, model_validator

from hybrid import topology
from hybrid.config.analytics import AnalyticsSettings
from hybrid.config.budget import BudgetSettings
from hybrid.config.cluster import ClusterSettings
from hybrid.config.database import DatabaseSettings
from hybrid.config.edge import EdgeSettings
from hybrid.config.inference import InferenceSettings
from hybrid.config.names import ResourceNames
from hybrid.config.network import WORKERS_RANGES, NetworkSettings
from hybrid.config.redis import RedisSettings
from hybrid.config.regions import Region
from hybrid.config.services import CloudRunServices
from hybrid.config.traffic import TrafficSettings
from hybrid.config.validation import BucketName, Settings, invalid, matching
from hybrid.config.workers import WorkersTier

# cloud.google.com/resource-manager/docs/creating-managing-projects: 6-30 chars,
# lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen.
ProjectId = Annotated[
    str,
    matching(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "6-30 lowercase letters, digits or hyphens, starting with a letter"),
]
# Prefixes every resource name; how long it may be depends on the names (see ResourceNames).
EnvName = Annotated[
    str,
    matching(r"[a-z]([a-z0-9-]{0,28}[a-z0-9])?", "1-30 lowercase letters, digits or hyphens, starting with a letter"),
]
# cloud.google.com/resource-manager/docs/labels-overview#requirements
# GCP allows '-' in keys too, but cdktf rewrites '-' to '_' in provider blocks (measured),
# where these labels go as default_labels: refuse it rather than deploy other keys.
LabelKey = Annotated[str, matching(r"[a-z][a-z0-9_]{0,62}", "a label key: 1-63 lowercase letters, digits or '_'")]
LabelValue = Annotated[str, matching(r"[a-z0-9_-]{0,63}", "a label value: 0-63 lowercase letters, digits, '_' or '-'")]


class StateSettings(Settings):
    bucket: BucketName


class Environment(Settings):
    name: EnvName
    project_id: ProjectId
    region: Region
    # A resource holds at most 64 labels (cloud.google.com/resource-manager/docs/labels-overview);
    # the stacks add "layer" and the provider adds "goog-terraform-provisioned".
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=62)
    state: StateSettings
    network: NetworkSettings
    database: DatabaseSettings
    cluster: ClusterSettings
    services: CloudRunServices
    inference: InferenceSettings
    # Optional: a budget with alerts, made in the network layer (deployed first).
    budget: BudgetSettings | None = None
    # Optional: the background workers tier (batch jobs), off unless enabled.
    workers: WorkersTier = WorkersTier()
    # Optional: Memorystore for Redis, where every gateway instance keeps the rate limit's buckets.
    redis: RedisSettings = RedisSettings()
    # Optional: the traffic `main.py cost` prices this environment at; no stack reads it.
    traffic: TrafficSettings = TrafficSettings()
    # Optional: the global load balancer with Cloud Armor in front of the public services, and
    # the further regions of the stateless tier.
    edge: EdgeSettings = EdgeSettings()
    # Usage records routed to BigQuery by a log sink, in the analytics layer (docs/analytics.md).
    analytics: AnalyticsSettings = AnalyticsSettings()

    @property
    def service_regions(self) -> tuple[str, ...]:
        """Where the frontend, the gateway and the orchestrator run: the environment's region first."""
        return (self.region, *(r for r in self.edge.regions if r != self.region))

    @model_validator(mode="after")
    def _workers_network(self) -> Environment:
        for key in WORKERS_RANGES:
            given = getattr(self.network, key) is not None
            if self.workers.enabled and not given:
                raise invalid(
                    f"network.{key}", "must be set when workers.enabled is true: the workers' GKE cluster needs it"
                )
            if given and not self.workers.enabled:
                raise invalid(f"network.{key}", "must not be set while workers.enabled is false: nothing would use it")
        return self

    @model_validator(mode="after")
    def _no_overlaps(self) -> Environment:
        ranges = list(self.network.ranges().items())
        overlaps = [
            (key_a, net_a, key_b, net_b)
            for i, (key_a, net_a) in enumerate(ranges)
            for key_b, net_b in ranges[i + 1 :]
            if net_a.overlaps(net_b)
        ]
        if overlaps:
            # Every overlap in the one message, so that one run shows them all.
            (key_a, net_a, key_b, _), *more = overlaps
            also = "".join(f"; {b} ({nb}) also overlaps {a} ({na})" for a, na, b, nb in more)
            raise invalid(key_b, f"must not overlap {key_a} ({net_a}); every range must be distinct{also}")
        return self

    @model_validator(mode="after")
    def _run_subnet_fits(self) -> Environment:
        # Direct VPC egress holds about two addresses per instance in the steady state, and a
        # revision scaling down keeps its addresses for a while
        # (cloud.google.com/run/docs/configuring/vpc-direct-vpc#direct-vpc-ip-allocation): during a
        # rollout the old and the new revision may both be at max scale, so count each service twice.
        # The services in the VPC are the topology's Cloud Run services that call through it (a
        # job's tasks are few); a service with no table of its own runs with the defaults.
        vpc_services = topology.for_environment(self).vpc_services()
        sized = {role: self.services.sizing(role).max_instances for role in vpc_services}
        needed = 2 * 2 * sum(sized.values())
        services = "'s and ".join(sized)
        # A subnet's first two and last two addresses are reserved
        # (cloud.google.com/vpc/docs/subnets#unusable-ip-addresses-in-every-subnet).
        usable = self.network.run_cidr.num_addresses - 4
        if usable < needed:
            raise invalid(
                "network.run_cidr",
                f"must have {needed} usable addresses, two per instance of the {services}'s "
                f"max_instances, twice over for a rollout's old and new revisions; it has {usable}",
            )
        return self

    @model_validator(mode="after")
    def _names_fit(self) -> Environment:
        names = self.names
        for key, (value, pattern, rule) in names.rules(workers=self.workers.enabled).items():
            if not re.fullmatch(pattern, value):
                raise invalid(
                    "name", f"must make names GCP accepts: the {key} name {value!r} ({len(value)} chars) must be {rule}"
                )
        # cloud.google.com/sql/docs/postgres/create-instance: project-ID:instance-ID <= 98 chars.
        if len(self.project_id) + 1 + len(names.sql_instance) > 98:
            raise invalid(
                "project_id", f"must be short enough for {self.project_id}:{names.sql_instance} to fit 98 characters"
            )
        return self

    @cached_property
    def names(self) -> ResourceNames:
        return ResourceNames(self.name, self.project_id)

    def stack_id(self, layer: str) -> str:
        return f"{self.name}-{layer}"
