"""A private GKE Standard cluster with node pools of its own: the background workers' cluster.

Standard rather than Autopilot so the workers' nodes can be Spot VMs in a pool that scales
from zero, with an on-demand pool beside it (docs/reference-architecture.md: background workers
on GKE Standard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdktf_cdktf_provider_google.container_cluster import (
    ContainerClusterNodeConfig,
    ContainerClusterNodeConfigShieldedInstanceConfig,
    ContainerClusterNodeConfigWorkloadMetadataConfig,
)
from cdktf_cdktf_provider_google.container_node_pool import (
    ContainerNodePool,
    ContainerNodePoolAutoscaling,
    ContainerNodePoolManagement,
    ContainerNodePoolNodeConfig,
    ContainerNodePoolNodeConfigShieldedInstanceConfig,
    ContainerNodePoolNodeConfigTaint,
    ContainerNodePoolNodeConfigWorkloadMetadataConfig,
)
from constructs import Construct

from hybrid.components.autopilot_cluster import CLOUD_PLATFORM_SCOPE, GkeCluster
from hybrid.components.control_plane import ClusterPlacement
from hybrid.components.grants import Repository
from hybrid.components.service_account import ServiceAccount
from hybrid.config.workers import OnDemandPoolSettings, SpotPoolSettings

# GKE labels every Spot node cloud.google.com/gke-spot=true; a Standard pool gets no taint of its
# own, and GKE's guidance is to taint it so that only Pods that tolerate preemption land there
# (cloud.google.com/kubernetes-engine/docs/how-to/spot-vms#use_nodeselector,
# cloud.google.com/kubernetes-engine/docs/concepts/spot-vms#scheduling-workloads).
SPOT_LABEL = "cloud.google.com/gke-spot"
SPOT_TAINT = ContainerNodePoolNodeConfigTaint(key=SPOT_LABEL, value="true", effect="NO_SCHEDULE")


@dataclass(frozen=True)
class NodePoolProps:
    name: str
    machine_type: str
    # The pool's node count across the region's zones, kept in this range by the cluster autoscaler.
    min_nodes: int
    max_nodes: int
    spot: bool

    @classmethod
    def spot_pool(cls, name: str, settings: SpotPoolSettings) -> NodePoolProps:
        """Spot VMs, scaled from zero: the file's [workers.spot_pool]."""
        return cls(name=name, machine_type=settings.machine_type, min_nodes=0, max_nodes=settings.max_nodes, spot=True)

    @classmethod
    def on_demand_pool(cls, name: str, settings: OnDemandPoolSettings) -> NodePoolProps:
        """On-demand VMs, for when Spot capacity is short: the file's [workers.on_demand_pool]."""
        return cls(
            name=name,
            machine_type=settings.machine_type,
            min_nodes=settings.min_nodes,
            max_nodes=settings.max_nodes,
            spot=False,
        )


@dataclass(frozen=True)
class StandardClusterProps:
    placement: ClusterPlacement
    pools: tuple[NodePoolProps, ...]


class StandardCluster(GkeCluster):
    """Node pools of its own (``props.pools``), and the GKE metadata server on every node."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        props: StandardClusterProps,
        *,
        node_account: ServiceAccount,
        pulls_from: tuple[Repository, ...],
    ) -> None:
        super().__init__(scope, id_, props.placement, node_account=node_account, pulls_from=pulls_from)
        self.pools = {pool.name: self._pool(pool, node_account) for pool in props.pools}

    def _kind(self, node_account: ServiceAccount) -> dict[str, Any]:
        return dict(
            # The pools below replace the default one, which a cluster is created with and which
            # Terraform then deletes (registry.terraform.io/providers/hashicorp/google/6.50.0/docs/
            # resources/container_cluster#remove_default_node_pool).
            remove_default_node_pool=True,
            initial_node_count=1,
            # Until then the default pool's node runs, and without a service account it would run
            # as the Compute Engine default one (cloud.google.com/kubernetes-engine/security/
            # configure-node-service-accounts): give it the nodes' own account, and the GKE
            # metadata server and Shielded VM settings the pools below have.
            node_config=ContainerClusterNodeConfig(
                service_account=node_account.email,
                oauth_scopes=[CLOUD_PLATFORM_SCOPE],
                workload_metadata_config=ContainerClusterNodeConfigWorkloadMetadataConfig(mode="GKE_METADATA"),
                shielded_instance_config=ContainerClusterNodeConfigShieldedInstanceConfig(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
            ),
            enable_shielded_nodes=True,
        )

    def _pool(self, pool: NodePoolProps, node_account: ServiceAccount) -> ContainerNodePool:
        return ContainerNodePool(
            self,
            f"pool-{pool.name}",
            name=pool.name,
            cluster=self.cluster.id,
            location=self.region,
            autoscaling=ContainerNodePoolAutoscaling(
                total_min_node_count=pool.min_nodes,
                total_max_node_count=pool.max_nodes,
                # Spot capacity differs by zone: take it in any zone that has it; spread
                # on-demand nodes evenly (cloud.google.com/kubernetes-engine/docs/concepts/
                # cluster-autoscaler#location-policy).
                location_policy="ANY" if pool.spot else "BALANCED",
            ),
            management=ContainerNodePoolManagement(auto_repair=True, auto_upgrade=True),
            node_config=ContainerNodePoolNodeConfig(
                machine_type=pool.machine_type,
                spot=pool.spot,
                taint=[SPOT_TAINT] if pool.spot else None,
                image_type="COS_CONTAINERD",
                service_account=node_account.email,
                oauth_scopes=[CLOUD_PLATFORM_SCOPE],
                # Pods see only their own Workload Identity, never the node's account.
                workload_metadata_config=ContainerNodePoolNodeConfigWorkloadMetadataConfig(mode="GKE_METADATA"),
                shielded_instance_config=ContainerNodePoolNodeConfigShieldedInstanceConfig(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
            ),
        )
