"""How clients outside the VPC reach a private GKE cluster's control plane, and the settings every
cluster of the platform shares (the Autopilot one for models, the Standard one for the workers)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from cdktf_cdktf_provider_google.container_cluster import (
    ContainerClusterBinaryAuthorization,
    ContainerClusterControlPlaneEndpointsConfig,
    ContainerClusterControlPlaneEndpointsConfigDnsEndpointConfig,
    ContainerClusterControlPlaneEndpointsConfigIpEndpointsConfig,
    ContainerClusterIpAllocationPolicy,
    ContainerClusterMasterAuth,
    ContainerClusterMasterAuthClientCertificateConfig,
    ContainerClusterMasterAuthorizedNetworksConfig,
    ContainerClusterMasterAuthorizedNetworksConfigCidrBlocks,
    ContainerClusterPrivateClusterConfig,
    ContainerClusterReleaseChannel,
    ContainerClusterWorkloadIdentityConfig,
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


class ClusterLifecycle(Protocol):
    """How a cluster is kept, as both clusters' settings models say it."""

    @property
    def release_channel(self) -> str: ...

    @property
    def deletion_protection(self) -> bool: ...


@dataclass(frozen=True)
class ClusterPlacement:
    """Where a cluster runs and how it is reached and kept: what its props share."""

    name: str
    project: str
    region: str
    network: str
    subnetwork: str
    # The subnet's secondary ranges for Pods and Services (VPC-native).
    pods_range: str
    services_range: str
    # The environment file's [cluster] or [workers.cluster]: its release channel and deletion protection.
    settings: ClusterLifecycle
    control_plane: ControlPlane

    def cluster_settings(self) -> dict[str, Any]:
        """ContainerCluster's arguments for a private, VPC-native cluster with Workload Identity,
        Dataplane V2 and the project's Binary Authorization policy, as every cluster here is."""
        return {
            "name": self.name,
            "location": self.region,
            # GKE Dataplane V2: enforces the workloads' NetworkPolicy.
            "datapath_provider": "ADVANCED_DATAPATH",
            "network": self.network,
            "subnetwork": self.subnetwork,
            "ip_allocation_policy": ContainerClusterIpAllocationPolicy(
                cluster_secondary_range_name=self.pods_range, services_secondary_range_name=self.services_range
            ),
            "private_cluster_config": ContainerClusterPrivateClusterConfig(enable_private_nodes=True),
            "control_plane_endpoints_config": self.control_plane.endpoints_config(),
            "master_authorized_networks_config": self.control_plane.authorized_networks_config(),
            "master_auth": NO_CLIENT_CERTIFICATE,
            # The project's Binary Authorization policy decides which images may run.
            "binary_authorization": ContainerClusterBinaryAuthorization(
                evaluation_mode="PROJECT_SINGLETON_POLICY_ENFORCE"
            ),
            "release_channel": ContainerClusterReleaseChannel(channel=self.settings.release_channel),
            "workload_identity_config": ContainerClusterWorkloadIdentityConfig(
                workload_pool=f"{self.project}.svc.id.goog"
            ),
            "deletion_protection": self.settings.deletion_protection,
        }
