"""A regional internal Application Load Balancer in front of one Cloud Run service: a private
address in the VPC for a service whose ingress is internal-only, for callers whose connector
sends only private ranges into the VPC (docs/network-egress.md)."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.compute_forwarding_rule import ComputeForwardingRule
from cdktf_cdktf_provider_google.compute_region_backend_service import (
    ComputeRegionBackendService,
    ComputeRegionBackendServiceBackend,
)
from cdktf_cdktf_provider_google.compute_region_network_endpoint_group import (
    ComputeRegionNetworkEndpointGroup,
    ComputeRegionNetworkEndpointGroupCloudRun,
)
from cdktf_cdktf_provider_google.compute_region_target_http_proxy import ComputeRegionTargetHttpProxy
from cdktf_cdktf_provider_google.compute_region_url_map import ComputeRegionUrlMap
from constructs import Construct

from hybrid.network_constants import HTTP_PORT

# Envoy-based regional load balancers (cloud.google.com/load-balancing/docs/l7-internal/setting-up-l7-internal-serverless).
SCHEME = "INTERNAL_MANAGED"


@dataclass(frozen=True)
class InternalLoadBalancerProps:
    name: str
    region: str
    network: str
    subnetwork: str  # the frontend's, a regular subnet (not the proxy-only one)
    address: str  # a reserved internal address in ``subnetwork``
    service: str  # the Cloud Run service's name


class InternalLoadBalancer(Construct):
    """Serverless NEG -> backend service -> URL map -> HTTP proxy -> forwarding rule, all regional
    and INTERNAL_MANAGED, as cloud.google.com/load-balancing/docs/l7-internal/setting-up-l7-internal-serverless
    builds them. The region's proxy-only subnet must exist before the forwarding rule
    (cloud.google.com/load-balancing/docs/proxy-only-subnets): the network layer makes it, and
    is applied first."""

    def __init__(self, scope: Construct, id_: str, props: InternalLoadBalancerProps) -> None:
        super().__init__(scope, id_)
        neg = ComputeRegionNetworkEndpointGroup(
            self,
            "neg",
            name=props.name,
            region=props.region,
            network_endpoint_type="SERVERLESS",
            cloud_run=ComputeRegionNetworkEndpointGroupCloudRun(service=props.service),
        )
        # No health check: a serverless NEG's backend service takes none
        # (cloud.google.com/load-balancing/docs/negs/serverless-neg-concepts#limitations).
        backend = ComputeRegionBackendService(
            self,
            "backend",
            name=props.name,
            region=props.region,
            load_balancing_scheme=SCHEME,
            backend=[ComputeRegionBackendServiceBackend(group=neg.id)],
        )
        url_map = ComputeRegionUrlMap(self, "url-map", name=props.name, region=props.region, default_service=backend.id)
        proxy = ComputeRegionTargetHttpProxy(self, "proxy", name=props.name, region=props.region, url_map=url_map.id)
        self.forwarding_rule = ComputeForwardingRule(
            self,
            "forwarding-rule",
            name=props.name,
            region=props.region,
            load_balancing_scheme=SCHEME,
            network=props.network,
            subnetwork=props.subnetwork,
            ip_address=props.address,
            ip_protocol="TCP",
            port_range=str(HTTP_PORT),
            target=proxy.id,
        )
