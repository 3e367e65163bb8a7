"""Typed, immutable settings for one environment, loaded from environments/<env>.toml.

Each domain's settings check themselves (network, database, cluster, services, inference,
budget); the checks here span domains. Everything GCP would refuse at deploy time is refused
at synth time, with a message naming the file, the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from functools import cached_property
from typing import Annotated

from pydantic import Field, model_validator

from hybrid import topology
from hybrid.catalog import gke_version, ladder_version
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
from hybrid.config.slo import SloSettings
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
    # Optional: the observability layer (dashboards, SLOs, alerts, the usage sink to BigQuery).
    slo: SloSettings | None = None
    # Usage records routed to BigQuery by a log sink, in the analytics layer (docs/analytics.md).
    analytics: AnalyticsSettings = AnalyticsSettings()

    @property
    def service_regions(self) -> tuple[str, ...]:
        """Where the frontend, the gateway and the orchestrator run: the environment's region first."""
        return (self.region, *(r for r in self.edge.regions if r != self.region))

    @model_validator(mode="after")
    def _ladder_version(self) -> Environment:
        gke = self.inference.gke
        if self.inference.placement != "gke" or gke is None or not gke.obtain:
            return self
        needed = ladder_version(list(gke.obtain))
        given = self.cluster.min_version
        if given is None or gke_version(given) < gke_version(needed):
            raise invalid(
                "cluster.min_version",
                f"must be at least {needed} for inference.gke.obtain = {list(gke.obtain)} (hybrid.catalog.RUNGS "
                "cites each rung's version); the cluster enforces it as its min_master_version",
            )
        return self

    @model_validator(mode="after")
    def _spill_reachable(self) -> Environment:
        if self.inference.spills_to_cloud_run and self.network.egress == "connector":
            raise invalid(
                "inference.spill_to",
                "'cloud_run' needs network.egress = 'direct': connector mode fronts only the orchestrator "
                "with an internal load balancer (docs/network-egress.md)",
            )
        return self

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
        run_cidr = self.network.run_cidr
        if run_cidr is None:  # connector mode: the connector's instances carry every service's traffic
            return self
        vpc_services = topology.for_environment(self).vpc_services()
        sized = {role: self.services.sizing(role).max_instances for role in vpc_services}
        needed = 2 * 2 * sum(sized.values())
        services = "'s and ".join(sized)
        # Every region runs the same services at the same sizes, so each region's subnet needs as many.
        for key, cidr in self._run_ranges(run_cidr):
            # A subnet's first two and last two addresses are reserved
            # (cloud.google.com/vpc/docs/subnets#unusable-ip-addresses-in-every-subnet).
            usable = cidr.num_addresses - 4
            if usable < needed:
                raise invalid(
                    key,
                    f"must have {needed} usable addresses, two per instance of the {services}'s "
                    f"max_instances, twice over for a rollout's old and new revisions; it has {usable}",
                )
        return self

    def _run_ranges(self, run_cidr: ipaddress.IPv4Network) -> Iterator[tuple[str, ipaddress.IPv4Network]]:
        """Each region's Cloud Run subnet range and its key, the environment's region first (its
        check needs no other field), those _region_subnets reports missing left out."""
        yield "network.run_cidr", run_cidr
        for region in self.service_regions[1:]:
            if region in self.network.region_run_cidrs:
                yield f"network.region_run_cidrs.{region}", self.network.region_run_cidrs[region]

    @model_validator(mode="after")
    def _region_subnets(self) -> Environment:
        further = self.service_regions[1:]
        if further and self.network.egress == "connector":
            # The connector and the orchestrator's internal load balancer are regional and built in
            # the environment's region only (docs/network-egress.md).
            raise invalid(
                "edge.regions",
                'must be empty while network.egress is "connector": connector mode is built for one region; '
                'use "direct" for a multi-region stateless tier',
            )
        # Direct VPC egress sends a service's traffic from a subnet in the service's own region
        # (cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations): one range per further region.
        given = self.network.region_run_cidrs
        for region in further:
            if region not in given:
                raise invalid(
                    f"network.region_run_cidrs.{region}",
                    f"must be set: edge.regions lists {region}, whose Cloud Run services need a "
                    "Direct VPC egress subnet of their own there (a /26 or larger)",
                )
        for region in given:
            if region not in further:
                raise invalid(
                    f"network.region_run_cidrs.{region}",
                    f"must name a region of edge.regions other than region ({self.region}); "
                    f"these are: {', '.join(further) or 'none'}",
                )
        return self

    @model_validator(mode="after")
    def _replica_elsewhere(self) -> Environment:
        if self.database.replica_region == self.region:
            raise invalid(
                "database.replica_region",
                f"must differ from region ({self.region}): a cross-region replica survives its region's outage",
            )
        return self

    @model_validator(mode="after")
    def _one_service_behind_the_internal_lb(self) -> Environment:
        # Connector mode reserves one internal load balancer address, for the orchestrator: another
        # internal Cloud Run service called through the VPC (the model server on Cloud Run) would
        # need one of its own, which is not built (docs/network-egress.md).
        others = set(topology.for_environment(self).behind_internal_lb()) - {"orchestrator"}
        if others:
            raise invalid(
                "network.egress",
                f'must be "direct" while {", ".join(sorted(others))} runs on Cloud Run and is called through the VPC: '
                '"connector" puts only the orchestrator behind its internal load balancer',
            )
        return self

    @model_validator(mode="after")
    def _names_fit(self) -> Environment:
        names = self.names
        rules = names.rules(
            workers=self.workers.enabled,
            connector=self.network.egress == "connector",
            regions=self.service_regions[1:],
            replica_region=self.database.replica_region,
        )
        for key, (value, pattern, rule) in rules.items():
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
