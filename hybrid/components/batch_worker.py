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

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_kubernetes.deployment_v1 import (
    DeploymentV1,
    DeploymentV1Metadata,
    DeploymentV1Spec,
    DeploymentV1SpecSelector,
    DeploymentV1SpecTemplate,
    DeploymentV1SpecTemplateMetadata,
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
    DeploymentV1SpecTemplateSpecContainerSecurityContext,
    DeploymentV1SpecTemplateSpecContainerSecurityContextCapabilities,
    DeploymentV1SpecTemplateSpecContainerVolumeMount,
    DeploymentV1SpecTemplateSpecSecurityContext,
    DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile,
    DeploymentV1SpecTemplateSpecToleration,
    DeploymentV1SpecTemplateSpecVolume,
    DeploymentV1SpecTemplateSpecVolumeEmptyDir,
    DeploymentV1Timeouts,
)
from cdktf_cdktf_provider_kubernetes.horizontal_pod_autoscaler_v2 import (
    HorizontalPodAutoscalerV2SpecMetric,
    HorizontalPodAutoscalerV2SpecMetricExternal,
    HorizontalPodAutoscalerV2SpecMetricExternalMetric,
    HorizontalPodAutoscalerV2SpecMetricExternalMetricSelector,
    HorizontalPodAutoscalerV2SpecMetricExternalTarget,
)
from constructs import Construct

from hybrid.components.scaling import autoscaler, disruption_budget
from hybrid.components.standard_cluster import SPOT_LABEL
from hybrid.config.workers import WorkerDeploymentSettings

NAME = "worker"
LABELS = {"app": NAME}
PORT_NAME = "health"
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
        self.deployment = DeploymentV1(
            self,
            "deployment",
            metadata=DeploymentV1Metadata(name=NAME, namespace=props.namespace, labels=LABELS),
            # The apply waits until the workers run (at least min_replicas, 1 or more), so an image
            # that cannot be pulled fails the deploy instead of leaving Pods in ImagePullBackOff.
            # The Spot pool may scale up from zero first, hence more than the provider's 10 minutes
            # (registry.terraform.io/providers/hashicorp/kubernetes/latest/docs/resources/deployment_v1#timeouts).
            wait_for_rollout=True,
            timeouts=DeploymentV1Timeouts(create="20m", update="20m"),
            # The autoscaler owns the replica count once the Deployment exists.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["spec[0].replicas"]),
            spec=DeploymentV1Spec(
                replicas=str(props.settings.min_replicas),
                selector=DeploymentV1SpecSelector(match_labels=LABELS),
                template=DeploymentV1SpecTemplate(
                    metadata=DeploymentV1SpecTemplateMetadata(labels=LABELS), spec=self._pod_spec()
                ),
            ),
        )
        # A node drain or upgrade takes at most one worker at a time; its lines go back to the queue.
        disruption_budget(self, name=NAME, namespace=props.namespace, labels=LABELS)
        self.autoscaler = autoscaler(
            self,
            deployment=NAME,
            namespace=props.namespace,
            replicas=(props.settings.min_replicas, props.settings.max_replicas),
            metric=HorizontalPodAutoscalerV2SpecMetric(
                type="External",
                external=HorizontalPodAutoscalerV2SpecMetricExternal(
                    metric=HorizontalPodAutoscalerV2SpecMetricExternalMetric(
                        name=UNDELIVERED_METRIC,
                        selector=[
                            HorizontalPodAutoscalerV2SpecMetricExternalMetricSelector(
                                match_labels={"resource.labels.subscription_id": props.subscription}
                            )
                        ],
                    ),
                    # The backlog divided by the replicas: one more worker per this many waiting lines.
                    target=HorizontalPodAutoscalerV2SpecMetricExternalTarget(
                        type="AverageValue", average_value=str(props.settings.target_undelivered_per_replica)
                    ),
                ),
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
            security_context=DeploymentV1SpecTemplateSpecSecurityContext(
                run_as_non_root=True,
                seccomp_profile=DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile(type="RuntimeDefault"),
            ),
            container=[self._container()],
            # The root file system is read-only; the worker writes one small file, the database's
            # server CA for libpq (services/modelcalls/database.py), in memory here.
            volume=[
                DeploymentV1SpecTemplateSpecVolume(
                    name=TMP_VOLUME,
                    empty_dir=DeploymentV1SpecTemplateSpecVolumeEmptyDir(medium="Memory", size_limit="1Mi"),
                )
            ],
        )

    def _container(self) -> DeploymentV1SpecTemplateSpecContainer:
        props = self.props
        size = {"cpu": props.settings.cpu, "memory": props.settings.memory}
        return DeploymentV1SpecTemplateSpecContainer(
            name=NAME,
            image=props.image,
            # The image is pinned by tag or digest; the node keeps what it pulled.
            image_pull_policy="IfNotPresent",
            port=[DeploymentV1SpecTemplateSpecContainerPort(name=PORT_NAME, container_port=props.port)],
            env=[DeploymentV1SpecTemplateSpecContainerEnv(name=key, value=value) for key, value in props.env],
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
            security_context=DeploymentV1SpecTemplateSpecContainerSecurityContext(
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                run_as_non_root=True,
                capabilities=DeploymentV1SpecTemplateSpecContainerSecurityContextCapabilities(drop=["ALL"]),
            ),
        )
