"""Layer `cluster`: the GKE Autopilot cluster that serves self-hosted models on GPUs.

Private nodes in the network's workloads subnet (pods and services on its secondary
ranges), a control-plane endpoint a CI runner can reach (DNS endpoint with IAM, or
authorized networks), Workload Identity, Managed Prometheus, the GCS FUSE CSI
driver and the Secret Manager add-on, nodes running as a least-privilege account.
"""

from __future__ import annotations

from cdktf import TerraformOutput
from cdktf_cdktf_provider_kubernetes.namespace_v1 import NamespaceV1, NamespaceV1Metadata
from constructs import Construct

from hybrid.components.autopilot_cluster import AutopilotCluster
from hybrid.components.control_plane import ClusterLifecycle, ClusterPlacement, ControlPlane, ControlPlaneAccess
from hybrid.components.kubernetes_access import kubernetes_provider
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.components.workload_identity import WorkloadIdentity, WorkloadIdentityProps
from hybrid.config import ClusterSettings, Environment
from hybrid.layer import LayerStack
from stacks.network import NetworkStack
from stacks.registry import RegistryStack, repository


def control_plane(settings: ClusterSettings) -> ControlPlane:
    """How the environment's clusters' control planes are reached ([cluster]; the workers' too)."""
    return ControlPlane(
        ControlPlaneAccess(settings.control_plane_access), tuple(str(cidr) for cidr in settings.authorized_networks)
    )


def placement(
    env: Environment, name: str, network: str, subnet: tuple[str, str, str], settings: ClusterLifecycle
) -> ClusterPlacement:
    """``env``'s cluster ``name`` in ``network``, its nodes in ``subnet`` (subnet id, then its Pods' and
    Services' secondary range names), its control plane reached as [cluster] says."""
    subnetwork, pods_range, services_range = subnet
    return ClusterPlacement(
        name=name,
        project=env.project_id,
        region=env.region,
        network=network,
        subnetwork=subnetwork,
        pods_range=pods_range,
        services_range=services_range,
        settings=settings,
        control_plane=control_plane(env.cluster),
    )


def deploys_into(scope: Construct, env: Environment, cluster: str) -> None:
    """``scope``'s kubernetes provider: ``env``'s cluster ``cluster``, reached as its [cluster] says."""
    kubernetes_provider(scope, cluster=cluster, location=env.region, access=control_plane(env.cluster).access)


def workload_namespace(
    scope: Construct, env: Environment, name: str, pod_security: str, account: tuple[str, str], acts_as: ServiceAccount
) -> tuple[NamespaceV1, WorkloadIdentity]:
    """The namespace ``name``, whose Pods Pod Security admission holds to ``pod_security``
    (kubernetes.io/docs/concepts/security/pod-security-admission), and in it the Kubernetes service
    account ``account`` (construct id, name) acting as ``acts_as``: where a workload runs, and as whom."""
    id_, account_name = account
    namespace = NamespaceV1(
        scope,
        "namespace",
        metadata=NamespaceV1Metadata(name=name, labels={"pod-security.kubernetes.io/enforce": pod_security}),
    )
    identity = WorkloadIdentity(
        scope,
        id_,
        WorkloadIdentityProps(project=env.project_id, name=account_name),
        namespace=namespace,
        google_account=acts_as,
    )
    return namespace, identity


class ClusterStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, network: NetworkStack, registry: RegistryStack) -> None:
        # After the registry: its Docker Hub mirror is granted on below.
        super().__init__(scope, env, "cluster", network, registry)
        nodes = ServiceAccount(
            self,
            "node-identity",
            ServiceAccountProps(
                account_id=env.names.node_account,
                display_name="GKE nodes",
                description="Runs the model cluster's nodes: logs, metrics and image pulls only.",
            ),
        )
        self.autopilot = AutopilotCluster(
            self,
            "models",
            placement(
                env,
                env.names.cluster,
                network.outputs.network_id,
                (network.outputs.workloads_subnet_id, env.names.pods_range, env.names.services_range),
                env.cluster,
            ),
            node_account=nodes,
            # vLLM's image, through the mirror (stacks.registry.mirrored_image).
            pulls_from=(repository(env, env.names.dockerhub_mirror),),
            min_version=env.cluster.min_version,
        )
        TerraformOutput(self, "cluster_name", value=self.autopilot.cluster.name)
