"""How clients outside the VPC reach a private GKE cluster's control plane: one way for every
cluster of the platform (the Autopilot one for models, the Standard one for the workers)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cdktf_cdktf_provider_google.container_cluster import (
    ContainerClusterControlPlaneEndpointsConfig,
    ContainerClusterControlPlaneEndpointsConfigDnsEndpointConfig,
    ContainerClusterControlPlaneEndpointsConfigIpEndpointsConfig,
    ContainerClusterMasterAuth,
    ContainerClusterMasterAuthClientCertificateConfig,
    ContainerClusterMasterAuthorizedNetworksConfig,
    ContainerClusterMasterAuthorizedNetworksConfigCidrBlocks,
)


class ControlPlaneAccess(Enum):
    """How a client outside the VPC reaches the control plane."""

    DNS = "dns"  # the DNS endpoint, authorized by IAM
    AUTHORIZED_NETWORKS = "authorized_networks"  # the IP endpoint, from listed ranges only


@dataclass(frozen=True)
class ControlPlane:
    access: ControlPlaneAccess
    # CIDRs admitted to the IP endpoint; used with AUTHORIZED_NETWORKS only.
    authorized_networks: tuple[str, ...] = ()

    def endpoints_config(self) -> ContainerClusterControlPlaneEndpointsConfig:
        dns_access = self.access is ControlPlaneAccess.DNS
        return ContainerClusterControlPlaneEndpointsConfig(
            dns_endpoint_config=ContainerClusterControlPlaneEndpointsConfigDnsEndpointConfig(
                allow_external_traffic=dns_access
            ),
            ip_endpoints_config=ContainerClusterControlPlaneEndpointsConfigIpEndpointsConfig(enabled=not dns_access),
        )

    def authorized_networks_config(self) -> ContainerClusterMasterAuthorizedNetworksConfig | None:
        if self.access is ControlPlaneAccess.DNS:
            return None
        return ContainerClusterMasterAuthorizedNetworksConfig(
            gcp_public_cidrs_access_enabled=False,
            cidr_blocks=[
                ContainerClusterMasterAuthorizedNetworksConfigCidrBlocks(cidr_block=cidr, display_name=cidr)
                for cidr in self.authorized_networks
            ],
        )


# No client certificates: clients authenticate with IAM.
NO_CLIENT_CERTIFICATE = ContainerClusterMasterAuth(
    client_certificate_config=ContainerClusterMasterAuthClientCertificateConfig(issue_client_certificate=False)
)
