"""The Custom Metrics Stackdriver Adapter: lets an HPA read Managed Prometheus metrics.

Objects and RBAC as in GoogleCloudPlatform/k8s-stackdriver's
custom-metrics-stackdriver-adapter manifest (new resource model); it reads Cloud
Monitoring as a Google service account of its own, through Workload Identity.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_kubernetes.api_service_v1 import (
    ApiServiceV1,
    ApiServiceV1Metadata,
    ApiServiceV1Spec,
    ApiServiceV1SpecService,
)
from cdktf_cdktf_provider_kubernetes.cluster_role_binding_v1 import (
    ClusterRoleBindingV1,
    ClusterRoleBindingV1Metadata,
    ClusterRoleBindingV1RoleRef,
    ClusterRoleBindingV1Subject,
)
from cdktf_cdktf_provider_kubernetes.cluster_role_v1 import ClusterRoleV1, ClusterRoleV1Metadata, ClusterRoleV1Rule
from cdktf_cdktf_provider_kubernetes.deployment_v1 import (
    DeploymentV1SpecTemplateSpec,
    DeploymentV1SpecTemplateSpecContainer,
    DeploymentV1SpecTemplateSpecContainerPort,
    DeploymentV1SpecTemplateSpecContainerResources,
    DeploymentV1SpecTemplateSpecContainerVolumeMount,
)
from cdktf_cdktf_provider_kubernetes.namespace_v1 import NamespaceV1, NamespaceV1Metadata
from cdktf_cdktf_provider_kubernetes.role_binding_v1 import (
    RoleBindingV1,
    RoleBindingV1Metadata,
    RoleBindingV1RoleRef,
    RoleBindingV1Subject,
)
from cdktf_cdktf_provider_kubernetes.service_v1 import ServiceV1, ServiceV1Metadata, ServiceV1Spec, ServiceV1SpecPort
from constructs import Construct

from hybrid.components.deployment import container_security, deployment, memory_volume, pod_security
from hybrid.components.roles import MONITORING_VIEWER
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.components.workload_identity import WorkloadIdentity, WorkloadIdentityProps

NAMESPACE = "custom-metrics"
NAME = "custom-metrics-stackdriver-adapter"
IMAGE = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.15.2-gke.1"
LABELS = {"run": NAME, "k8s-app": NAME}
# The adapter is a k8s.io/apiserver server (sigs.k8s.io/custom-metrics-apiserver's AdapterBase adds
# SecureServingOptions' flags): it serves on --secure-port and writes a self-signed certificate into
# --cert-dir (default apiserver.local.config/certificates, under the read-only root). See
# GoogleCloudPlatform/k8s-stackdriver custom-metrics-stackdriver-adapter/adapter.go and
# k8s.io/apiserver/pkg/server/options/serving.go.
# It stays on 443, as upstream: a private cluster's control plane reaches Pods on 443 and 10250
# only (GKE's own firewall rule; cloud.google.com/kubernetes-engine/docs/how-to/private-clusters#add_firewall_rules),
# and this VPC denies every other ingress. So it runs as the image's root user, but with no
# capability except binding that port, no privilege escalation and a read-only root.
SECURE_PORT = 443
CERT_DIR = "/var/run/serving-cert"
PORT_NAME = "https"
# The metric APIs the adapter serves; the HPA asks custom.metrics for Pods metrics.
API_SERVICES = (
    ("custom.metrics.k8s.io", "v1beta1"),
    ("custom.metrics.k8s.io", "v1beta2"),
    ("external.metrics.k8s.io", "v1beta1"),
)


@dataclass(frozen=True)
class CustomMetricsAdapterProps:
    project: str


class CustomMetricsAdapter(Construct):
    """Reads Cloud Monitoring as ``google_account`` (made by ``reader_account``)."""

    @staticmethod
    def reader_account(scope: Construct, id_: str, props: ServiceAccountProps, *, project: str) -> ServiceAccount:
        """The Google account an adapter reads Cloud Monitoring as, holding the role to."""
        account = ServiceAccount(scope, id_, props)
        account.grant_project_role(MONITORING_VIEWER, project=project)
        return account

    def __init__(
        self, scope: Construct, id_: str, props: CustomMetricsAdapterProps, *, google_account: ServiceAccount
    ) -> None:
        super().__init__(scope, id_)
        namespace = NamespaceV1(self, "namespace", metadata=NamespaceV1Metadata(name=NAMESPACE))
        identity = WorkloadIdentity(
            self,
            "account",
            WorkloadIdentityProps(project=props.project, name=NAME),
            namespace=namespace,
            google_account=google_account,
        )
        self._rbac(subject={"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE})
        self._deployment(identity)
        self._api(self._service())

    def _rbac(self, subject: dict[str, str]) -> None:
        """Delegated authentication, reading Pods and nodes, and the HPA's reading external metrics."""
        self._cluster_role_binding(
            "auth-delegator", f"{NAMESPACE}:system:auth-delegator", "system:auth-delegator", subject
        )
        RoleBindingV1(
            self,
            "auth-reader",
            metadata=RoleBindingV1Metadata(name=f"{NAMESPACE}-auth-reader", namespace="kube-system"),
            role_ref=RoleBindingV1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="extension-apiserver-authentication-reader"
            ),
            subject=[RoleBindingV1Subject(**subject)],
        )
        reader = ClusterRoleV1(
            self,
            "resource-reader",
            metadata=ClusterRoleV1Metadata(name=f"{NAMESPACE}-resource-reader"),
            rule=[
                ClusterRoleV1Rule(
                    api_groups=[""], resources=["pods", "nodes", "nodes/stats"], verbs=["get", "list", "watch"]
                )
            ],
        )
        self._cluster_role_binding(
            "resource-reader-binding", f"{NAMESPACE}-resource-reader", reader.metadata.name, subject
        )
        external_reader = ClusterRoleV1(
            self,
            "external-metrics-reader",
            metadata=ClusterRoleV1Metadata(name="external-metrics-reader"),
            rule=[
                ClusterRoleV1Rule(
                    api_groups=["external.metrics.k8s.io"], resources=["*"], verbs=["list", "get", "watch"]
                )
            ],
        )
        self._cluster_role_binding(
            "hpa-external-metrics",
            "external-metrics-reader",
            external_reader.metadata.name,
            {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"},
        )

    def _cluster_role_binding(self, id_: str, name: str, role: str, subject: dict[str, str]) -> None:
        ClusterRoleBindingV1(
            self,
            id_,
            metadata=ClusterRoleBindingV1Metadata(name=name),
            role_ref=ClusterRoleBindingV1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
            subject=[ClusterRoleBindingV1Subject(**subject)],
        )

    def _deployment(self, identity: WorkloadIdentity) -> None:
        """The adapter's Deployment, as the upstream manifest writes it."""
        container = DeploymentV1SpecTemplateSpecContainer(
            name="pod-custom-metrics-stackdriver-adapter",
            image=IMAGE,
            command=[
                "/adapter",
                "--use-new-resource-model=true",
                "--fallback-for-container-metrics=true",
                f"--secure-port={SECURE_PORT}",
                f"--cert-dir={CERT_DIR}",
            ],
            port=[
                DeploymentV1SpecTemplateSpecContainerPort(name=PORT_NAME, container_port=SECURE_PORT, protocol="TCP")
            ],
            resources=DeploymentV1SpecTemplateSpecContainerResources(
                requests={"cpu": "250m", "memory": "200Mi"},
                limits={"cpu": "250m", "memory": "200Mi"},
            ),
            security_context=container_security(read_only_root=True, add=["NET_BIND_SERVICE"]),
            volume_mount=[DeploymentV1SpecTemplateSpecContainerVolumeMount(name="serving-cert", mount_path=CERT_DIR)],
        )
        pod = DeploymentV1SpecTemplateSpec(
            service_account_name=identity.name,
            security_context=pod_security(),
            container=[container],
            # The one writable place: the generated serving certificate and key.
            volume=[memory_volume("serving-cert", "1Mi")],
        )
        deployment(self, name=NAME, namespace=NAMESPACE, labels=LABELS, pod=pod, replicas=1, autoscaled=False)

    def _service(self) -> ServiceV1:
        service = ServiceV1(
            self,
            "service",
            metadata=ServiceV1Metadata(name=NAME, namespace=NAMESPACE, labels=LABELS),
            spec=ServiceV1Spec(
                type="ClusterIP",
                selector=LABELS,
                # The APIServices below reach the Service on 443; it forwards to the adapter's own port.
                port=[ServiceV1SpecPort(name=PORT_NAME, port=443, target_port=PORT_NAME, protocol="TCP")],
            ),
        )
        return service

    def _api(self, service: ServiceV1) -> None:
        """The metrics APIs, served by ``service``."""
        for group, version in API_SERVICES:
            ApiServiceV1(
                self,
                f"api-{version}-{group.split('.')[0]}",
                metadata=ApiServiceV1Metadata(name=f"{version}.{group}"),
                spec=ApiServiceV1Spec(
                    group=group,
                    version=version,
                    group_priority_minimum=100,
                    version_priority=200 if version == "v1beta2" else 100,
                    insecure_skip_tls_verify=True,
                    service=ApiServiceV1SpecService(name=service.metadata.name, namespace=NAMESPACE),
                ),
            )
