"""The kubernetes provider of a stack whose objects go into a cluster made by an earlier stack:
configured from the cluster as read at plan time, with a short-lived token."""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_google.data_google_client_config import DataGoogleClientConfig
from cdktf_cdktf_provider_google.data_google_container_cluster import DataGoogleContainerCluster
from cdktf_cdktf_provider_kubernetes.provider import KubernetesProvider
from constructs import Construct

from hybrid.components.control_plane import ControlPlaneAccess


def kubernetes_provider(
    scope: Construct, *, cluster: str, location: str, access: ControlPlaneAccess
) -> KubernetesProvider:
    gke = DataGoogleContainerCluster(scope, "cluster", name=cluster, location=location)
    client = DataGoogleClientConfig(scope, "client")
    if access is ControlPlaneAccess.DNS:
        # The DNS endpoint carries a publicly trusted certificate and checks IAM.
        endpoint = gke.control_plane_endpoints_config.get(0).dns_endpoint_config.get(0).endpoint
        return KubernetesProvider(scope, "kubernetes", host=f"https://{endpoint}", token=client.access_token)
    return KubernetesProvider(
        scope,
        "kubernetes",
        host=f"https://{gke.endpoint}",
        token=client.access_token,
        cluster_ca_certificate=Fn.base64decode(gke.master_auth.get(0).cluster_ca_certificate),
    )
