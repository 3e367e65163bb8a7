"""A private GKE Autopilot cluster for GPU workloads."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.container_cluster import (
    ContainerCluster,
    ContainerClusterAddonsConfig,
    ContainerClusterAddonsConfigGcsFuseCsiDriverConfig,
    ContainerClusterBinaryAuthorization,
    ContainerClusterClusterAutoscaling,
    ContainerClusterClusterAutoscalingAutoProvisioningDefaults,
    ContainerClusterIpAllocationPolicy,
    ContainerClusterMonitoringConfig,
    ContainerClusterMonitoringConfigManagedPrometheus,
    ContainerClusterPrivateClusterConfig,
    ContainerClusterReleaseChannel,
    ContainerClusterSecretManagerConfig,
    ContainerClusterWorkloadIdentityConfig,
)
from constructs import Construct

from hybrid.components.control_plane import NO_CLIENT_CERTIFICATE, ControlPlane, ControlPlaneAccess
from hybrid.components.grants import Project, grant, role_id
from hybrid.components.service_account import ServiceAccount

# The least a node needs: GKE's own node role, and pulling images from Artifact Registry
# (cloud.google.com/kubernetes-engine/docs/how-to/service-accounts#default-gke-service-agent).
NODE_ROLES = ("roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def grant_node_roles(node_account: ServiceAccount, *, project: str) -> None:
    for role in NODE_ROLES:
        grant(node_account, role_id(role), role=role, to=node_account, on=Project(project))


@dataclass(frozen=True)
class AutopilotClusterProps:
    name: str
    project: str
    region: str
    network: str
    subnetwork: str
    # The subnet's secondary ranges for Pods and Services (VPC-native).
    pods_range: str
    services_range: str
    release_channel: str
    deletion_protection: bool
    control_plane_access: ControlPlaneAccess
    # CIDRs admitted to the IP endpoint; used with AUTHORIZED_NETWORKS only.
    authorized_networks: tuple[str, ...] = ()


class AutopilotCluster(Construct):
    def __init__(
        self, scope: Construct, id_: str, props: AutopilotClusterProps, *, node_account: ServiceAccount
    ) -> None:
        super().__init__(scope, id_)
        grant_node_roles(node_account, project=props.project)
        control_plane = ControlPlane(props.control_plane_access, props.authorized_networks)
        self.cluster = ContainerCluster(
            self,
            "cluster",
            name=props.name,
            location=props.region,
            enable_autopilot=True,
            # GKE Dataplane V2: enforces the model servers' NetworkPolicy.
            datapath_provider="ADVANCED_DATAPATH",
            network=props.network,
            subnetwork=props.subnetwork,
            ip_allocation_policy=ContainerClusterIpAllocationPolicy(
                cluster_secondary_range_name=props.pods_range, services_secondary_range_name=props.services_range
            ),
            private_cluster_config=ContainerClusterPrivateClusterConfig(enable_private_nodes=True),
            control_plane_endpoints_config=control_plane.endpoints_config(),
            master_authorized_networks_config=control_plane.authorized_networks_config(),
            master_auth=NO_CLIENT_CERTIFICATE,
            # The project's Binary Authorization policy decides which images may run.
            binary_authorization=ContainerClusterBinaryAuthorization(
                evaluation_mode="PROJECT_SINGLETON_POLICY_ENFORCE"
            ),
            release_channel=ContainerClusterReleaseChannel(channel=props.release_channel),
            workload_identity_config=ContainerClusterWorkloadIdentityConfig(
                workload_pool=f"{props.project}.svc.id.goog"
            ),
            monitoring_config=ContainerClusterMonitoringConfig(
                managed_prometheus=ContainerClusterMonitoringConfigManagedPrometheus(enabled=True)
            ),
            addons_config=ContainerClusterAddonsConfig(
                gcs_fuse_csi_driver_config=ContainerClusterAddonsConfigGcsFuseCsiDriverConfig(enabled=True)
            ),
            # Mounts Secret Manager secrets into Pods (the model server's Hugging Face token).
            secret_manager_config=ContainerClusterSecretManagerConfig(enabled=True),
            cluster_autoscaling=ContainerClusterClusterAutoscaling(
                auto_provisioning_defaults=ContainerClusterClusterAutoscalingAutoProvisioningDefaults(
                    service_account=node_account.email, oauth_scopes=[CLOUD_PLATFORM_SCOPE]
                )
            ),
            deletion_protection=props.deletion_protection,
        )
