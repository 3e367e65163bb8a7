"""A private GKE Autopilot cluster for GPU workloads."""

from __future__ import annotations

from typing import Any

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
from hybrid.components.grants import Repository
from hybrid.components.roles import GKE_NODE
from hybrid.components.service_account import ServiceAccount

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def grant_node_roles(node_account: ServiceAccount, *, project: str, pulls_from: tuple[Repository, ...]) -> None:
    """The least a node needs (roles.GKE_NODE), and pulls from the repositories it reads images from."""
    node_account.grant_project_role(GKE_NODE, project=project)
    for repository in pulls_from:
        repository.grant_pull(node_account)


class GkeCluster(Construct):
    """A private cluster at ``placement`` whose nodes run as ``node_account``, granted the node
    roles here and reads on ``pulls_from`` only; each kind adds its own settings (``_kind``)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        placement: ClusterPlacement,
        *,
        node_account: ServiceAccount,
        pulls_from: tuple[Repository, ...],
    ) -> None:
        super().__init__(scope, id_)
        grant_node_roles(node_account, project=placement.project, pulls_from=pulls_from)
        self.region = placement.region
        self.cluster = ContainerCluster(self, "cluster", **placement.cluster_settings(), **self._kind(node_account))

    def _kind(self, node_account: ServiceAccount) -> dict[str, Any]:
        raise NotImplementedError


class AutopilotCluster(GkeCluster):
    """GKE provisions the nodes, as ``node_account``, with Managed Prometheus, GCS FUSE and Secret Manager on;
    the control plane runs ``min_version`` or later when given (what the model servers' ComputeClass needs)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        placement: ClusterPlacement,
        *,
        node_account: ServiceAccount,
        pulls_from: tuple[Repository, ...],
        min_version: str | None = None,
    ) -> None:
        self.min_version = min_version
        super().__init__(scope, id_, placement, node_account=node_account, pulls_from=pulls_from)

    def _kind(self, node_account: ServiceAccount) -> dict[str, Any]:
        return dict(
            min_master_version=self.min_version,
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
