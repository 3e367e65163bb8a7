"""A Cloud Run service's Prometheus metrics, to Cloud Monitoring: Google's Managed Service for
Prometheus sidecar beside the service's container, scraping the port its metrics are served on.

Why this sidecar and not an OpenTelemetry collector: the services expose Prometheus metrics,
and for those Google recommends this one ("for services that write Prometheus metrics, use the
Managed Service for Prometheus sidecar", cloud.google.com/run/docs/monitoring-managed-prometheus-sidecar;
the OTel sidecar is for OTLP). Its metrics then share one PromQL namespace with the GKE
workloads' (PodMonitoring: hybrid/components/batch_worker.py, vllm_server.py).

The sidecar scrapes localhost:8080 unless told otherwise by a RunMonitoring document at
/etc/rungmp/config.yaml, which Google has mounted from Secret Manager
(cloud.google.com/stackdriver/google-cloud-managed-service-for-prometheus/docs/cloudrun-sidecar).
8080 is the public port here, so the metrics are on a port of their own on 127.0.0.1: the
sidecar shares the instance's network namespace, a caller reaching the service does not.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_service import (
    CloudRunV2ServiceTemplateContainers,
    CloudRunV2ServiceTemplateContainersVolumeMounts,
    CloudRunV2ServiceTemplateVolumes,
    CloudRunV2ServiceTemplateVolumesSecret,
    CloudRunV2ServiceTemplateVolumesSecretItems,
)
from cdktf_cdktf_provider_google.secret_manager_secret import (
    SecretManagerSecret,
    SecretManagerSecretReplication,
    SecretManagerSecretReplicationUserManaged,
    SecretManagerSecretReplicationUserManagedReplicas,
)
from cdktf_cdktf_provider_google.secret_manager_secret_iam_member import SecretManagerSecretIamMember
from cdktf_cdktf_provider_google.secret_manager_secret_version import SecretManagerSecretVersion
from constructs import Construct

from hybrid.components.grants import Secret
from hybrid.components.service_account import ServiceAccount
from services.servicekit.metrics_address import ADDRESS_VARIABLE

# Pinned: a new collector is a reviewed change, not whatever the tag points to on the next deploy.
SIDECAR_IMAGE = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
CONFIG_DIRECTORY = "/etc/rungmp"  # the sidecar reads config.yaml there, nowhere else
METRICS_PORT = 9464  # on 127.0.0.1, apart from the public 8080
SCRAPE_INTERVAL = "30s"  # the sidecar's default


def run_monitoring(name: str, port: int) -> str:
    """The sidecar's RunMonitoring document: scrape 127.0.0.1:``port``/metrics."""
    return (
        "apiVersion: monitoring.googleapis.com/v1beta\n"
        "kind: RunMonitoring\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  endpoints:\n  - port: {port}\n    path: /metrics\n    interval: {SCRAPE_INTERVAL}\n"
    )


class MetricsSidecar(Construct):
    """The RunMonitoring document in a secret of its own, ``secret_id``, readable by the service's
    identity, and what the service's template adds: the sidecar and its volume."""

    def __init__(
        self, scope: Construct, id_: str, *, secret_id: str, project: str, region: str, reader: ServiceAccount
    ) -> None:
        super().__init__(scope, id_)
        self.secret_id = secret_id
        # What the service is told: serve the metrics where the sidecar scrapes them.
        self.env = ((ADDRESS_VARIABLE, f"127.0.0.1:{METRICS_PORT}"),)
        secret = SecretManagerSecret(
            self,
            "config",
            secret_id=self.secret_id,
            # Kept in the region its one reader runs in
            # (cloud.google.com/secret-manager/docs/choosing-replication#user-managed).
            replication=SecretManagerSecretReplication(
                user_managed=SecretManagerSecretReplicationUserManaged(
                    replicas=[SecretManagerSecretReplicationUserManagedReplicas(location=region)]
                )
            ),
        )
        self.version = SecretManagerSecretVersion(
            self,
            "config-version",
            # Named, not referenced, so the apply-order check can match it; depends_on orders it.
            secret=f"projects/{project}/secrets/{self.secret_id}",
            secret_data=run_monitoring(secret_id, METRICS_PORT),
            depends_on=[secret],
        )
        self.grant: SecretManagerSecretIamMember = Secret(self.secret_id).grant_read(self, reader)
        self.grant.depends_on = [secret.fqn]

    def container(self) -> CloudRunV2ServiceTemplateContainers:
        return CloudRunV2ServiceTemplateContainers(
            name="metrics-collector",
            image=SIDECAR_IMAGE,
            volume_mounts=[CloudRunV2ServiceTemplateContainersVolumeMounts(name="rungmp", mount_path=CONFIG_DIRECTORY)],
        )

    def volume(self) -> CloudRunV2ServiceTemplateVolumes:
        return CloudRunV2ServiceTemplateVolumes(
            name="rungmp",
            secret=CloudRunV2ServiceTemplateVolumesSecret(
                secret=self.secret_id,
                items=[CloudRunV2ServiceTemplateVolumesSecretItems(path="config.yaml", version=self.version.version)],
            ),
        )
