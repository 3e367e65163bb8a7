"""The batch worker on the workers' Standard cluster: a Deployment that prefers Spot nodes and
falls back to on-demand ones, a disruption budget, and an autoscaler on the subscription's backlog.

The autoscaler is a HorizontalPodAutoscaler on Pub/Sub's external metric, read through the Custom
Metrics Stackdriver Adapter (cloud.google.com/kubernetes-engine/docs/tutorials/autoscaling-metrics#pubsub),
not KEDA: the worker keeps at least one replica anyway (its sweeper expires and re-finalizes
batches), so KEDA's scale-to-zero would buy nothing, and it would add a controller with
cluster-wide rights. The docs/architecture.md's "Background workers" section says more.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_kubernetes.deployment_v1 import (
    DeploymentV1SpecTemplateSpec,
    DeploymentV1SpecTemplateSpecAffinity,
    DeploymentV1SpecTemplateSpecAffinityNodeAffinity,
    DeploymentV1SpecTemplateSpecAffinityNodeAffinityPreferredDuringSchedulingIgnoredDuringExecution,
    DeploymentV1SpecTemplateSpecAffinityNodeAffinityPreferredDuringSchedulingIgnoredDuringExecutionPreference,
    DeploymentV1SpecTemplateSpecAffinityNodeAffinityPreferredDuringSchedulingIgnoredDuringExecutionPreferenceMatchExpressions,
    DeploymentV1SpecTemplateSpecContainer,
    DeploymentV1SpecTemplateSpecContainerEnv,
    DeploymentV1SpecTemplateSpecContainerLivenessProbe,
    DeploymentV1SpecTemplateSpecContainerLivenessProbeHttpGet,
    DeploymentV1SpecTemplateSpecContainerPort,
    DeploymentV1SpecTemplateSpecContainerReadinessProbe,
    DeploymentV1SpecTemplateSpecContainerReadinessProbeHttpGet,
    DeploymentV1SpecTemplateSpecContainerResources,
    DeploymentV1SpecTemplateSpecContainerVolumeMount,
    DeploymentV1SpecTemplateSpecToleration,
    DeploymentV1Timeouts,
)
from cdktf_cdktf_provider_kubernetes.manifest import Manifest
from constructs import Construct

from hybrid.components.deployment import container_security, deployment, memory_volume, pod_security
from hybrid.components.scaling import autoscaler, disruption_budget, external_metric
from hybrid.components.standard_cluster import SPOT_LABEL
from hybrid.config.workers import WorkerDeploymentSettings
from services.servicekit.metrics_address import ADDRESS_VARIABLE

NAME = "worker"
LABELS = {"app": NAME}
PORT_NAME = "health"
# Its Prometheus metrics (services/servicekit/metrics.py) on a port of their own, which Managed
# Service for Prometheus' collectors scrape as the PodMonitoring below says
# (cloud.google.com/stackdriver/docs/managed-prometheus/setup-managed#gmp-pod-monitoring).
METRICS_PORT_NAME, METRICS_PORT = "metrics", 9464
# The adapter's name for Cloud Monitoring's metric, "/" written as "|"
# (cloud.google.com/kubernetes-engine/docs/tutorials/autoscaling-metrics#pubsub).
UNDELIVERED_METRIC = "pubsub.googleapis.com|subscription|num_undelivered_messages"

TMP_VOLUME = "tmp"


@dataclass(frozen=True)
class BatchWorkerProps:
    namespace: str
    service_account: str
    image: str
    # The environment file's [workers.deployment]: size, replicas, the backlog each replica takes.
    # Its defaults are the worker's.
    settings: WorkerDeploymentSettings
    env: tuple[tuple[str, str], ...]
    port: int
    # The worker's own drain deadline after SIGTERM; Kubernetes waits a little longer before SIGKILL.
    shutdown_seconds: int
    subscription: str  # the subscription's name, as Cloud Monitoring labels it (subscription_id)


class BatchWorker(Construct):
    def __init__(self, scope: Construct, id_: str, props: BatchWorkerProps) -> None:
        super().__init__(scope, id_)
        self.props = props
        self.deployment = deployment(
            self,
            name=NAME,
            namespace=props.namespace,
            labels=LABELS,
            pod=self._pod_spec(),
            replicas=props.settings.min_replicas,
            autoscaled=True,
            # The apply waits until the workers run (at least min_replicas, 1 or more), so an image
            # that cannot be pulled fails the deploy instead of leaving Pods in ImagePullBackOff.
            # The Spot pool may scale up from zero first, hence more than the provider's 10 minutes
            # (registry.terraform.io/providers/hashicorp/kubernetes/latest/docs/resources/deployment_v1#timeouts).
            wait_for_rollout=True,
            timeouts=DeploymentV1Timeouts(create="20m", update="20m"),
        )
        self.pod_monitoring = Manifest(
            self,
            "pod-monitoring",
            manifest={
                "apiVersion": "monitoring.googleapis.com/v1",
                "kind": "PodMonitoring",
                "metadata": {"name": NAME, "namespace": props.namespace},
                "spec": {
                    "selector": {"matchLabels": LABELS},
                    "endpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics", "interval": "30s"}],
                },
            },
        )
        # A node drain or upgrade takes at most one worker at a time; its lines go back to the queue.
        disruption_budget(self, name=NAME, namespace=props.namespace, labels=LABELS)
        # The backlog divided by the replicas: one more worker per this many waiting lines.
        self.autoscaler = autoscaler(
            self,
            deployment=NAME,
            namespace=props.namespace,
            replicas=props.settings,
            metric=external_metric(
                UNDELIVERED_METRIC,
                match_labels={"resource.labels.subscription_id": props.subscription},
                average=props.settings.target_undelivered_per_replica,
            ),
        )

    def _pod_spec(self) -> DeploymentV1SpecTemplateSpec:
        props = self.props
        spot = "true"
        return DeploymentV1SpecTemplateSpec(
            service_account_name=props.service_account,
            # Spot nodes are tainted (StandardCluster): tolerate them, and prefer them, so the
            # scheduler (and the autoscaler) take on-demand nodes only when no Spot node fits
            # (cloud.google.com/kubernetes-engine/docs/how-to/spot-vms#use_nodeselector).
            toleration=[
                DeploymentV1SpecTemplateSpecToleration(
                    key=SPOT_LABEL, operator="Equal", value=spot, effect="NoSchedule"
                )
            ],
            affinity=DeploymentV1SpecTemplateSpecAffinity(
                node_affinity=DeploymentV1SpecTemplateSpecAffinityNodeAffinity(
                    preferred_during_scheduling_ignored_during_execution=[
                        DeploymentV1SpecTemplateSpecAffinityNodeAffinityPreferredDuringSchedulingIgnoredDuringExecution(
                            weight=100,
                            preference=DeploymentV1SpecTemplateSpecAffinityNodeAffinityPreferredDuringSchedulingIgnoredDuringExecutionPreference(
                                match_expressions=[
                                    DeploymentV1SpecTemplateSpecAffinityNodeAffinityPreferredDuringSchedulingIgnoredDuringExecutionPreferenceMatchExpressions(
                                        key=SPOT_LABEL, operator="In", values=[spot]
                                    )
                                ]
                            ),
                        )
                    ]
                )
            ),
            termination_grace_period_seconds=props.shutdown_seconds + 5,
            security_context=pod_security(run_as_non_root=True),
            container=[self._container()],
            # The root file system is read-only; the worker writes one small file, the database's
            # server CA for libpq (services/modelcalls/database.py), in memory here.
            volume=[memory_volume(TMP_VOLUME, "1Mi", medium="Memory")],
        )

    def _container(self) -> DeploymentV1SpecTemplateSpecContainer:
        props = self.props
        size = {"cpu": props.settings.cpu, "memory": props.settings.memory}
        return DeploymentV1SpecTemplateSpecContainer(
            name=NAME,
            image=props.image,
            # The image is pinned by tag or digest; the node keeps what it pulled.
            image_pull_policy="IfNotPresent",
            port=[
                DeploymentV1SpecTemplateSpecContainerPort(name=PORT_NAME, container_port=props.port),
                DeploymentV1SpecTemplateSpecContainerPort(name=METRICS_PORT_NAME, container_port=METRICS_PORT),
            ],
            env=[
                DeploymentV1SpecTemplateSpecContainerEnv(name=key, value=value)
                # The collectors scrape the Pod's address; no Service exposes the port.
                for key, value in (*props.env, (ADDRESS_VARIABLE, f"0.0.0.0:{METRICS_PORT}"))
            ],
            volume_mount=[DeploymentV1SpecTemplateSpecContainerVolumeMount(name=TMP_VOLUME, mount_path="/tmp")],
            resources=DeploymentV1SpecTemplateSpecContainerResources(requests=size, limits=size),
            readiness_probe=DeploymentV1SpecTemplateSpecContainerReadinessProbe(
                http_get=DeploymentV1SpecTemplateSpecContainerReadinessProbeHttpGet(path="/health", port=PORT_NAME),
                period_seconds=10,
            ),
            liveness_probe=DeploymentV1SpecTemplateSpecContainerLivenessProbe(
                http_get=DeploymentV1SpecTemplateSpecContainerLivenessProbeHttpGet(path="/health", port=PORT_NAME),
                period_seconds=20,
                failure_threshold=3,
            ),
            security_context=container_security(read_only_root=True, run_as_non_root=True),
        )
