"""A private GKE Autopilot cluster for GPU workloads."""

from __future__ import annotations

from cdktf_cdktf_provider_google.container_cluster import (
    ContainerCluster,
    ContainerClusterAddonsConfig,
    ContainerClusterAddonsConfigGcsFuseCsiDriverConfig,
    ContainerClusterClusterAutoscaling,
    ContainerClusterClusterAutoscalingAutoProvisioningDefaults,
    ContainerClusterMonitoringConfig,
    ContainerClusterMonitoringConfigManagedPrometheus,
    ContainerClusterSecretManagerConfig,
)
from constructs import Construct

from hybrid.components.control_plane import ClusterPlacement
from hybrid.components.grants import Project, grant, role_id
from hybrid.components.service_account import ServiceAccount

# The least a node needs: GKE's own node role, and pulling images from Artifact Registry
# (cloud.google.com/kubernetes-engine/docs/how-to/service-accounts#default-gke-service-agent).
NODE_ROLES = ("roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def grant_node_roles(node_account: ServiceAccount, *, project: str) -> None:
    for role in NODE_ROLES:
        grant(node_account, role_id(role), role=role, to=node_account, on=Project(project))


class AutopilotCluster(Construct):
    def __init__(
        self, scope: Construct, id_: str, placement: ClusterPlacement, *, node_account: ServiceAccount
    ) -> None:
        super().__init__(scope, id_)
        grant_node_roles(node_account, project=placement.project)
        self.cluster = ContainerCluster(
            self,
            "cluster",
            **placement.cluster_settings(),
            enable_autopilot=True,
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
        )
