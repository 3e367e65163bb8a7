"""Typed settings for the VPC's address plan: the subnets, their secondary ranges, Private
Services Access and the model servers' internal address."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, model_validator

from hybrid.config.validation import Cidr, IPv4, Settings, between, invalid

WORKERS_RANGES = ("workers_cidr", "workers_pods_cidr", "workers_services_cidr")


class NetworkSettings(Settings):
    subnet_cidr: Cidr
    pods_cidr: Cidr
    services_cidr: Cidr
    psa_cidr: Cidr
    inference_port: Annotated[int, between(1, 65535)] = 8000
    # The internal load balancer's address in subnet_cidr: the orchestrator's way to the models.
    inference_address: IPv4
    # The Cloud Run services' own subnet: they send private traffic into the VPC from it
    # with Direct VPC egress (see "Network paths" in docs/architecture.md for why not a connector).
    run_cidr: Cidr
    # The Direct VPC egress subnet of each further region of the stateless tier ([edge] regions):
    # a service's egress subnet must be in the service's own region
    # (cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations).
    # Keyed by region: each key must be one of edge.regions (Environment checks it).
    region_run_cidrs: dict[str, Cidr] = Field(default_factory=dict)
    # The background workers' subnet (GKE Standard nodes) and its Pods and Services secondary
    # ranges; required when [workers] is enabled, refused otherwise.
    workers_cidr: Cidr | None = None
    workers_pods_cidr: Cidr | None = None
    workers_services_cidr: Cidr | None = None

    def ranges(self) -> dict[str, ipaddress.IPv4Network]:
        given = {
            "network.subnet_cidr": self.subnet_cidr,
            "network.pods_cidr": self.pods_cidr,
            "network.services_cidr": self.services_cidr,
            "network.psa_cidr": self.psa_cidr,
            "network.run_cidr": self.run_cidr,
            **{f"network.{key}": getattr(self, key) for key in WORKERS_RANGES},
            **{f"network.region_run_cidrs.{region}": cidr for region, cidr in self.region_run_cidrs.items()},
        }
        return {key: cidr for key, cidr in given.items() if cidr is not None}

    def run_cidrs(self, regions: tuple[str, ...]) -> tuple[ipaddress.IPv4Network, ...]:
        """The Direct VPC egress ranges of ``regions`` (the environment's own first): every range a
        Cloud Run service's private traffic may come from."""
        return (self.run_cidr, *(self.region_run_cidrs[region] for region in regions[1:]))

    def _region_run_keys(self) -> list[tuple[str, ipaddress.IPv4Network]]:
        return [(f"region_run_cidrs.{region}", cidr) for region, cidr in self.region_run_cidrs.items()]

    @model_validator(mode="after")
    def _sizes(self) -> NetworkSettings:
        # cloud.google.com/vpc/docs/configure-private-services-access: at least a /24.
        if self.psa_cidr.prefixlen > 24:
            raise invalid("psa_cidr", "must be a /24 or larger for Private Services Access")
        # cloud.google.com/run/docs/configuring/vpc-direct-vpc#direct-vpc-ip-allocation: /26 or larger.
        for key, cidr in (("run_cidr", self.run_cidr), *self._region_run_keys()):
            if cidr.prefixlen > 26:
                raise invalid(key, "must be a /26 or larger for Cloud Run's Direct VPC egress")
        subnet = self.subnet_cidr
        # A subnet's first two and last two addresses are reserved
        # (cloud.google.com/vpc/docs/subnets#unusable-ip-addresses-in-every-subnet).
        if not subnet.network_address + 2 <= self.inference_address <= subnet.broadcast_address - 2:
            raise invalid("inference_address", f"must be a usable address of subnet_cidr ({subnet})")
        return self
