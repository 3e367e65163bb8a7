"""Typed settings for the VPC's address plan: the subnets, their secondary ranges, Private
Services Access and the model servers' internal address."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, model_validator

from hybrid.config.validation import Cidr, IPv4, Settings, between, invalid

WORKERS_RANGES = ("workers_cidr", "workers_pods_cidr", "workers_services_cidr")
# What connector mode needs, and direct mode refuses.
CONNECTOR_KEYS = ("connector_cidr", "proxy_only_cidr", "internal_lb_address")


class NetworkSettings(Settings):
    subnet_cidr: Cidr
    pods_cidr: Cidr
    services_cidr: Cidr
    psa_cidr: Cidr
    inference_port: Annotated[int, between(1, 65535)] = 8000
    # The internal load balancer's address in subnet_cidr: the orchestrator's way to the models.
    inference_address: IPv4
    # How the Cloud Run services send private traffic into the VPC (docs/network-egress.md):
    # "direct", Direct VPC egress from run_cidr; or "connector", a Serverless VPC Access connector
    # in connector_cidr, the internal-only services reached through an internal Application Load
    # Balancer at internal_lb_address, its proxies in proxy_only_cidr.
    egress: Literal["direct", "connector"] = "direct"
    # The Cloud Run services' own subnet: they send private traffic into the VPC from it
    # with Direct VPC egress (see "Network paths" in docs/architecture.md). Direct mode only.
    run_cidr: Cidr | None = None
    # Connector mode only: the connector's own subnet, a /28 it alone uses
    # (cloud.google.com/vpc/docs/serverless-vpc-access).
    connector_cidr: Cidr | None = None
    # The connector's instances: 2 to 10; it scales up under load and never back down (same page).
    connector_min_instances: Annotated[int, between(2, 9)] = 2
    # Above connector_min_instances.
    connector_max_instances: Annotated[int, between(3, 10)] = 10
    # Connector mode only: the internal load balancer's Envoy proxies' subnet, /26 or larger
    # (cloud.google.com/load-balancing/docs/proxy-only-subnets).
    proxy_only_cidr: Cidr | None = None
    # Connector mode only: the internal load balancer's frontend, a usable address of subnet_cidr:
    # the private address the callers of an internal Cloud Run service dial.
    internal_lb_address: IPv4 | None = None
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
            "network.connector_cidr": self.connector_cidr,
            "network.proxy_only_cidr": self.proxy_only_cidr,
            **{f"network.{key}": getattr(self, key) for key in WORKERS_RANGES},
            **{f"network.region_run_cidrs.{region}": cidr for region, cidr in self.region_run_cidrs.items()},
        }
        return {key: cidr for key, cidr in given.items() if cidr is not None}

    @property
    def cloud_run_cidr(self) -> ipaddress.IPv4Network:
        """The range the Cloud Run services' private traffic comes from in the VPC, which firewall
        rules match: Direct VPC egress's subnet, or the connector's instances'."""
        cidr = self.connector_cidr if self.egress == "connector" else self.run_cidr
        assert cidr is not None, "checked by _egress_mode"
        return cidr

    @property
    def internal_lb_cidr(self) -> ipaddress.IPv4Network:
        """The internal load balancer's frontend, as a firewall rule's destination."""
        assert self.internal_lb_address is not None, "checked by _egress_mode"
        return ipaddress.IPv4Network(self.internal_lb_address)

    @model_validator(mode="after")
    def _egress_mode(self) -> NetworkSettings:
        mode = {"direct": ("run_cidr",), "connector": CONNECTOR_KEYS}
        for key in mode[self.egress]:
            if getattr(self, key) is None:
                raise invalid(key, f'must be set when network.egress is "{self.egress}"')
        other = "connector" if self.egress == "direct" else "direct"
        for key in mode[other]:
            if getattr(self, key) is not None:
                raise invalid(key, f'must not be set while network.egress is "{self.egress}": it is for "{other}"')
        if self.egress == "direct":
            return self
        # A connector's subnet must be a /28 (cloud.google.com/vpc/docs/serverless-vpc-access#ip_address_ranges).
        if self.connector_cidr is not None and self.connector_cidr.prefixlen != 28:
            raise invalid("connector_cidr", "must be a /28, a Serverless VPC Access connector's subnet size")
        if self.connector_min_instances >= self.connector_max_instances:
            raise invalid("connector_min_instances", "must be below connector_max_instances")
        # Its smallest size is a /26 (cloud.google.com/load-balancing/docs/proxy-only-subnets#proxy_only_subnet_size).
        if self.proxy_only_cidr is not None and self.proxy_only_cidr.prefixlen > 26:
            raise invalid("proxy_only_cidr", "must be a /26 or larger for the load balancer's proxies")
        self._usable_in_subnet("internal_lb_address")
        if self.internal_lb_address == self.inference_address:
            raise invalid("internal_lb_address", "must differ from inference_address")
        return self

    def _usable_in_subnet(self, key: str) -> None:
        subnet = self.subnet_cidr
        # A subnet's first two and last two addresses are reserved
        # (cloud.google.com/vpc/docs/subnets#unusable-ip-addresses-in-every-subnet).
        if not subnet.network_address + 2 <= getattr(self, key) <= subnet.broadcast_address - 2:
            raise invalid(key, f"must be a usable address of subnet_cidr ({subnet})")

    def cloud_run_cidrs(self, regions: tuple[str, ...]) -> tuple[ipaddress.IPv4Network, ...]:
        """Every range a Cloud Run service's private traffic may come from, in ``regions`` (the
        environment's own first): its cloud_run_cidr, then each further region's subnet."""
        return (self.cloud_run_cidr, *(self.region_run_cidrs[region] for region in regions[1:]))

    def _region_run_keys(self) -> list[tuple[str, ipaddress.IPv4Network]]:
        return [(f"region_run_cidrs.{region}", cidr) for region, cidr in self.region_run_cidrs.items()]

    @model_validator(mode="after")
    def _sizes(self) -> NetworkSettings:
        # cloud.google.com/vpc/docs/configure-private-services-access: at least a /24.
        if self.psa_cidr.prefixlen > 24:
            raise invalid("psa_cidr", "must be a /24 or larger for Private Services Access")
        # cloud.google.com/run/docs/configuring/vpc-direct-vpc#direct-vpc-ip-allocation: /26 or larger.
        for key, cidr in (("run_cidr", self.run_cidr), *self._region_run_keys()):
            if cidr is not None and cidr.prefixlen > 26:
                raise invalid(key, "must be a /26 or larger for Cloud Run's Direct VPC egress")
        self._usable_in_subnet("inference_address")
        return self
