"""vLLM's OpenAI-compatible server on GKE Autopilot GPUs, reachable only from Cloud Run's subnet.

Deployment (requests equal limits, a startup budget sized from the model), an internal
passthrough load balancer on a reserved address, a PodDisruptionBudget, a NetworkPolicy,
a PodMonitoring for Managed Prometheus and an HPA on vLLM's queue length; with an
obtainability ladder, the custom ComputeClass whose rungs the Pods are placed on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from cdktf_cdktf_provider_kubernetes.deployment_v1 import (
    DeploymentV1,
    DeploymentV1SpecStrategy,
    DeploymentV1SpecStrategyRollingUpdate,
    DeploymentV1SpecTemplateSpec,
    DeploymentV1SpecTemplateSpecContainer,
    DeploymentV1SpecTemplateSpecContainerEnv,
    DeploymentV1SpecTemplateSpecContainerLifecycle,
    DeploymentV1SpecTemplateSpecContainerLifecyclePreStop,
    DeploymentV1SpecTemplateSpecContainerLifecyclePreStopExec,
    DeploymentV1SpecTemplateSpecContainerLivenessProbe,
    DeploymentV1SpecTemplateSpecContainerPort,
    DeploymentV1SpecTemplateSpecContainerReadinessProbe,
    DeploymentV1SpecTemplateSpecContainerResources,
    DeploymentV1SpecTemplateSpecContainerStartupProbe,
    DeploymentV1SpecTemplateSpecContainerVolumeMount,
    DeploymentV1SpecTemplateSpecVolume,
    DeploymentV1SpecTemplateSpecVolumeCsi,
    DeploymentV1SpecTemplateSpecVolumePersistentVolumeClaim,
)
from cdktf_cdktf_provider_kubernetes.horizontal_pod_autoscaler_v2 import (
    HorizontalPodAutoscalerV2,
    HorizontalPodAutoscalerV2SpecBehavior,
    HorizontalPodAutoscalerV2SpecBehaviorScaleDown,
    HorizontalPodAutoscalerV2SpecBehaviorScaleDownPolicy,
)
from cdktf_cdktf_provider_kubernetes.manifest import Manifest
from cdktf_cdktf_provider_kubernetes.network_policy_v1 import (
    NetworkPolicyV1,
    NetworkPolicyV1Metadata,
    NetworkPolicyV1Spec,
    NetworkPolicyV1SpecIngress,
    NetworkPolicyV1SpecIngressFrom,
    NetworkPolicyV1SpecIngressFromIpBlock,
    NetworkPolicyV1SpecIngressFromNamespaceSelector,
    NetworkPolicyV1SpecIngressPorts,
    NetworkPolicyV1SpecPodSelector,
)
from cdktf_cdktf_provider_kubernetes.persistent_volume_claim_v1 import (
    PersistentVolumeClaimV1,
    PersistentVolumeClaimV1Metadata,
    PersistentVolumeClaimV1Spec,
    PersistentVolumeClaimV1SpecResources,
)
from cdktf_cdktf_provider_kubernetes.pod_disruption_budget_v1 import (
    PodDisruptionBudgetV1,
)
from cdktf_cdktf_provider_kubernetes.service_v1 import (
    ServiceV1,
    ServiceV1Metadata,
    ServiceV1Spec,
    ServiceV1SpecPort,
)
from constructs import Construct

from hybrid.catalog import MODELS
from hybrid.components.deployment import container_security, deployment, memory_volume, pod_security
from hybrid.components.scaling import autoscaler, disruption_budget, pods_metric
from hybrid.config import GkeModelServerSettings
from hybrid.network_constants import HEALTH_CHECK_RANGES

NAME = "vllm"
LABELS = {"app": NAME, "tier": "inference"}
# GKE's queue-size metric for vLLM, through Managed Prometheus and the custom metrics adapter
# (cloud.google.com/kubernetes-engine/docs/best-practices/machine-learning/inference/autoscaling).
QUEUE_METRIC = "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
# Managed Prometheus's collectors run in gke-gmp-system on Autopilot (gmp-system is the
# Standard clusters' namespace): cloud.google.com/stackdriver/docs/managed-prometheus/setup-managed.
MANAGED_PROMETHEUS_NAMESPACE = "gke-gmp-system"
# The container port the Service and the PodMonitoring name; the NetworkPolicy admits its number.
PORT_NAME = "http"
MODEL_CACHE = "/data/models"
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
STARTUP_PERIOD_SECONDS = 10
# The model servers' custom ComputeClass, when [inference.gke] obtain lists rungs.
COMPUTE_CLASS = "model-servers"
# Spot's preemption notice is 30 s, of which GKE gives non-system Pods the first 15 s by default
# (cloud.google.com/kubernetes-engine/docs/concepts/spot-vms): a longer grace would be cut short.
SPOT_GRACE_SECONDS = 15
GRACE_SECONDS = 60
# A Pod being deleted leaves the Service's endpoints while its preStop hook runs
# (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination): sleeping first lets the
# load balancer stop sending before vLLM gets SIGTERM, on which its server (uvicorn) stops accepting
# and lets in-flight requests finish (www.uvicorn.org/server-behavior/#graceful-process-shutdown).
DRAIN_SECONDS = 5


Probe = TypeVar(
    "Probe",
    DeploymentV1SpecTemplateSpecContainerStartupProbe,
    DeploymentV1SpecTemplateSpecContainerReadinessProbe,
    DeploymentV1SpecTemplateSpecContainerLivenessProbe,
)


class Weights(Enum):
    """Where the server reads the model's weights from."""

    PVC = "pvc"  # a persistent disk the server downloads them to once
    GCSFUSE = "gcsfuse"  # a bucket staged ahead, mounted read-only by GCS FUSE
    STREAMER = "streamer"  # a bucket staged ahead, streamed into GPU memory by the Run:ai model streamer


# The lowest rate each path reads weights at, in GB/s, for the startup probe's budget
# (docs/gpu-capacity.md, "Fast model loading", gives the published figures these sit below).
LOAD_GB_PER_SECOND = {Weights.PVC: 0.05, Weights.GCSFUSE: 0.2, Weights.STREAMER: 0.5}
# After the weights: CUDA graph capture, the KV cache's allocation, the server's start.
WARMUP_SECONDS = 300
# The startup budget is twice the estimate, and never below the 30 minutes every server had before.
STARTUP_MARGIN, STARTUP_FLOOR_SECONDS = 2.0, 1800


def startup_failures(settings: GkeModelServerSettings) -> int:
    """The startup probe's failureThreshold: STARTUP_PERIOD_SECONDS apart, they cover the time the model
    takes to load (its size over its path's rate, plus warm-up) twice over, or the floor."""
    load = MODELS[settings.model].weights_gb / LOAD_GB_PER_SECOND[Weights(settings.weights)] + WARMUP_SECONDS
    budget = max(STARTUP_FLOOR_SECONDS, load * STARTUP_MARGIN)
    return math.ceil(budget / STARTUP_PERIOD_SECONDS)


@dataclass(frozen=True)
class VllmServerProps:
    project: str
    namespace: str
    service_account: str  # the Kubernetes service account the Pods run as
    image: str
    # The environment file's [inference.gke]: the model, its GPUs and size, where its weights are
    # read from (the disk's size, or the bucket), the token, the replicas. Its defaults are the server's.
    settings: GkeModelServerSettings
    quantization: str | None  # the model's, from the catalog
    port: int
    load_balancer_ip: str
    allowed_sources: tuple[str, ...]
    # Whether clients in other regions of the VPC may reach the internal load balancer (the
    # orchestrators of [edge] regions); an internal passthrough load balancer admits only its own
    # region's clients without it
    # (cloud.google.com/kubernetes-engine/docs/concepts/service-load-balancer-parameters#global_access).
    global_access: bool = False

    @property
    def weights(self) -> Weights:
        return Weights(self.settings.weights)

    @property
    def grace_seconds(self) -> int:
        return SPOT_GRACE_SECONDS if "spot" in self.settings.obtain else GRACE_SECONDS


# The Service annotation that turns on an internal load balancer's global access
# (cloud.google.com/kubernetes-engine/docs/concepts/service-load-balancer-parameters#global_access).
GLOBAL_ACCESS = "networking.gke.io/internal-load-balancer-allow-global-access"


class VllmServer(Construct):
    """Built in the order the objects depend on each other: the claim and the secret's provider
    class the Pod mounts, the Deployment, then what fronts, guards, watches and scales it."""

    def __init__(self, scope: Construct, id_: str, props: VllmServerProps) -> None:
        super().__init__(scope, id_)
        self.props = props
        volumes, mounts = self._volumes()
        self.compute_class = self._compute_class() if props.settings.obtain else None
        self.deployment = self._deployment(self._pod_spec(volumes, mounts))
        self.service = self._load_balancer()
        self._disruption_budget()
        self._network_policy()
        self._pod_monitoring()
        self._autoscaler()

    # The Deployment, from the outside in.

    def _deployment(self, pod: DeploymentV1SpecTemplateSpec) -> DeploymentV1:
        props = self.props
        return deployment(
            self,
            name=NAME,
            namespace=props.namespace,
            labels=LABELS,
            pod=pod,
            replicas=props.settings.min_replicas,
            autoscaled=True,
            strategy=self._strategy(),
            # GCS FUSE needs its sidecar injected (cloud.google.com/kubernetes-engine/docs/how-to/persistent-volumes/cloud-storage-fuse-csi-driver-sidecar).
            pod_annotations={"gke-gcsfuse/volumes": "true"} if props.weights is Weights.GCSFUSE else None,
            wait_for_rollout=False,
            # Autopilot places a Pod selecting a ComputeClass only once the class exists.
            depends_on=[self.compute_class] if self.compute_class else None,
        )

    def _compute_class(self) -> Manifest:
        """The ladder's rungs as the priorities of a custom ComputeClass, best first
        (cloud.google.com/kubernetes-engine/docs/concepts/about-custom-compute-classes)."""
        settings = self.props.settings
        return Manifest(
            self,
            "compute-class",
            manifest={
                "apiVersion": "cloud.google.com/v1",
                "kind": "ComputeClass",
                "metadata": {"name": COMPUTE_CLASS},
                "spec": {
                    "priorities": [self._priority(rung) for rung in settings.obtain],
                    # Moves the servers back up the ladder when a better rung has capacity again.
                    "activeMigration": {"optimizeRulePriority": True},
                    # Autopilot creates the nodes; Standard clusters need this to do the same.
                    "nodePoolAutoCreation": {"enabled": True},
                    # Below the last rung, the Pods wait rather than land on a node outside the ladder.
                    "whenUnsatisfiable": "DoNotScaleUp",
                },
            },
        )

    def _priority(self, rung: str) -> dict[str, object]:
        """One rung: the servers' GPUs, obtained that way (the fields: cloud.google.com/kubernetes-engine/docs/reference/crds/computeclass)."""
        settings = self.props.settings
        gpu: dict[str, object] = {"gpu": {"type": settings.gpu_type, "count": settings.gpu_count}}
        if rung == "reservation":
            # The named one (the settings require it): Autopilot consumes specific reservations only
            # (cloud.google.com/kubernetes-engine/docs/how-to/consuming-reservations).
            # Part of a raw manifest (a free-form map, not provider structs): no field is dropped.
            return gpu | {"reservations": {"affinity": "Specific", "specific": [dict(name=settings.reservation)]}}
        if rung == "flex_start":
            return gpu | {"flexStart": {"enabled": True}}
        if rung == "spot":
            return gpu | {"spot": True}
        return gpu  # on-demand: neither Spot nor flex-start nor a reservation

    def _strategy(self) -> DeploymentV1SpecStrategy:
        if self.props.weights is Weights.PVC:
            # The weights disk is ReadWriteOnce: a surged second Pod could not attach it and
            # would block the rollout. Recreate stops the old Pod before starting the new one
            # (kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment).
            return DeploymentV1SpecStrategy(type="Recreate")
        # Bucket reads are shared, so old and new servers can run side by side. Surge one
        # server at a time and take none away: each new server loads for minutes, so serving
        # capacity never drops below what the autoscaler asked for; the price is one more GPU
        # during the rollout, and if none can be had the rollout waits while the old Pods serve.
        return DeploymentV1SpecStrategy(
            type="RollingUpdate",
            rolling_update=DeploymentV1SpecStrategyRollingUpdate(max_surge="1", max_unavailable="0"),
        )

    def _pod_spec(
        self,
        volumes: list[DeploymentV1SpecTemplateSpecVolume],
        mounts: list[DeploymentV1SpecTemplateSpecContainerVolumeMount],
    ) -> DeploymentV1SpecTemplateSpec:
        props = self.props
        return DeploymentV1SpecTemplateSpec(
            service_account_name=props.service_account,
            node_selector=self._node_selector(),
            termination_grace_period_seconds=props.grace_seconds,
            security_context=pod_security(),
            container=[self._container(mounts)],
            volume=volumes,
        )

    def _node_selector(self) -> dict[str, str]:
        settings = self.props.settings
        if settings.obtain:
            # The class's rungs name the GPUs; the Pod names the class
            # (cloud.google.com/kubernetes-engine/docs/how-to/node-attributes-compute-classes).
            return {"cloud.google.com/compute-class": COMPUTE_CLASS}
        # Both are needed on Autopilot (cloud.google.com/kubernetes-engine/docs/how-to/autopilot-gpus).
        return {
            "cloud.google.com/gke-accelerator": settings.gpu_type,
            "cloud.google.com/gke-accelerator-count": str(settings.gpu_count),
        }

    def _container(
        self, mounts: list[DeploymentV1SpecTemplateSpecContainerVolumeMount]
    ) -> DeploymentV1SpecTemplateSpecContainer:
        props = self.props
        return DeploymentV1SpecTemplateSpecContainer(
            name=NAME,
            image=props.image,
            command=["python3", "-m", "vllm.entrypoints.openai.api_server"],
            args=self._args(),
            port=[DeploymentV1SpecTemplateSpecContainerPort(name=PORT_NAME, container_port=props.port)],
            env=[DeploymentV1SpecTemplateSpecContainerEnv(name=key, value=value) for key, value in self._env().items()],
            resources=self._resources(),
            startup_probe=self._health(
                DeploymentV1SpecTemplateSpecContainerStartupProbe,
                period=STARTUP_PERIOD_SECONDS,
                failures=startup_failures(props.settings),
            ),
            readiness_probe=self._health(
                DeploymentV1SpecTemplateSpecContainerReadinessProbe,
                period=10,
                failures=3,
            ),
            liveness_probe=self._health(
                DeploymentV1SpecTemplateSpecContainerLivenessProbe,
                period=30,
                failures=3,
            ),
            security_context=container_security(),
            volume_mount=mounts,
            lifecycle=DeploymentV1SpecTemplateSpecContainerLifecycle(
                pre_stop=[
                    DeploymentV1SpecTemplateSpecContainerLifecyclePreStop(
                        exec=DeploymentV1SpecTemplateSpecContainerLifecyclePreStopExec(
                            command=["sleep", str(DRAIN_SECONDS)]
                        )
                    )
                ]
            ),
        )

    def _args(self) -> list[str]:
        props = self.props
        args = [
            "--model",
            self._model_path(),
            "--tensor-parallel-size",
            str(props.settings.tensor_parallel_size),
            "--max-model-len",
            str(props.settings.max_model_len),
            "--gpu-memory-utilization",
            str(props.settings.gpu_memory_utilization),
            "--port",
            str(props.port),
        ]
        if props.quantization:
            args += ["--quantization", props.quantization]
        if props.weights is Weights.STREAMER:
            # Safetensors streamed from Cloud Storage into GPU memory, read concurrently
            # (docs.vllm.ai/en/latest/models/extensions/runai_model_streamer.html); each shard
            # streams its own part with tensor parallelism. Clients keep asking for the model by name.
            args += ["--load-format", "runai_streamer", "--served-model-name", props.settings.model]
            if props.settings.tensor_parallel_size > 1:
                args += ["--model-loader-extra-config", json.dumps({"distributed": True})]
        return args

    def _model_path(self) -> str:
        """The model's Hugging Face name, or with the streamer its staged copy: gs://<weights_bucket>/<model>."""
        settings = self.props.settings
        if self.props.weights is Weights.STREAMER:
            return f"gs://{settings.weights_bucket}/{settings.model}"
        return str(settings.model)

    def _env(self) -> dict[str, str]:
        env = {"HF_HOME": MODEL_CACHE}
        if self.props.settings.hf_token_secret:
            env["HF_TOKEN_PATH"] = f"{HF_TOKEN_DIR}/token"
        if self.props.weights is not Weights.PVC:
            # The bucket holds the weights, staged ahead; the server only reads it.
            env["HF_HUB_OFFLINE"] = "1"
        return env

    def _resources(self) -> DeploymentV1SpecTemplateSpecContainerResources:
        props = self.props
        quantity = {
            "cpu": str(props.settings.cpu),
            "memory": props.settings.memory,
            "ephemeral-storage": props.settings.ephemeral_storage,
            "nvidia.com/gpu": str(props.settings.gpu_count),
        }
        return DeploymentV1SpecTemplateSpecContainerResources(requests=quantity, limits=quantity)

    def _health(self, probe: type[Probe], *, period: int, failures: int) -> Probe:
        """``probe`` (startup, readiness or liveness) of vLLM's /health on the server's port."""
        return probe(
            # Each probe's http_get struct has the same two fields; jsii takes them as a dict.
            http_get={"path": "/health", "port": str(self.props.port)},
            period_seconds=period,
            failure_threshold=failures,
        )

    # The Pod's volumes: shared memory, the weights, the Hugging Face token.

    def _volumes(
        self,
    ) -> tuple[list[DeploymentV1SpecTemplateSpecVolume], list[DeploymentV1SpecTemplateSpecContainerVolumeMount]]:
        volumes = [
            # Tensor parallelism shares tensors between GPU processes through /dev/shm.
            memory_volume("dshm", "8Gi", medium="Memory"),
            self._model_cache_volume(),
        ]
        mounts = [
            DeploymentV1SpecTemplateSpecContainerVolumeMount(name="dshm", mount_path="/dev/shm"),
            DeploymentV1SpecTemplateSpecContainerVolumeMount(
                name="model-cache", mount_path=MODEL_CACHE, read_only=self.props.weights is Weights.GCSFUSE
            ),
        ]
        if self.props.settings.hf_token_secret:
            volumes.append(self._hf_token_volume(self.props.settings.hf_token_secret))
            mounts.append(
                DeploymentV1SpecTemplateSpecContainerVolumeMount(
                    name="hf-token", mount_path=HF_TOKEN_DIR, read_only=True
                )
            )
        return volumes, mounts

    def _model_cache_volume(self) -> DeploymentV1SpecTemplateSpecVolume:
        props = self.props
        if props.weights is Weights.STREAMER:
            # Only the tokenizer and config land on disk; the weights go straight to GPU memory.
            return memory_volume("model-cache", "10Gi")
        if props.weights is Weights.PVC:
            claim = PersistentVolumeClaimV1(
                self,
                "model-cache",
                metadata=PersistentVolumeClaimV1Metadata(name="model-cache", namespace=props.namespace),
                wait_until_bound=False,
                spec=PersistentVolumeClaimV1Spec(
                    access_modes=["ReadWriteOnce"],
                    storage_class_name="premium-rwo",
                    resources=PersistentVolumeClaimV1SpecResources(
                        requests={"storage": props.settings.weights_volume_size}
                    ),
                ),
            )
            return DeploymentV1SpecTemplateSpecVolume(
                name="model-cache",
                persistent_volume_claim=DeploymentV1SpecTemplateSpecVolumePersistentVolumeClaim(
                    claim_name=claim.metadata.name
                ),
            )
        return DeploymentV1SpecTemplateSpecVolume(
            name="model-cache",
            csi=DeploymentV1SpecTemplateSpecVolumeCsi(
                driver="gcsfuse.csi.storage.gke.io",
                volume_attributes={
                    "bucketName": props.settings.weights_bucket or "",  # validated: set for gcsfuse
                    "mountOptions": "implicit-dirs,file-cache:max-size-mb:-1",
                    "fileCacheCapacity": "-1",
                },
            ),
        )

    def _hf_token_volume(self, secret: str) -> DeploymentV1SpecTemplateSpecVolume:
        # GKE's Secret Manager add-on: the class is the Secrets Store CSI CRD
        # (secrets-store.csi.x-k8s.io/v1) with provider "gke"; only the Pod's CSI driver
        # is named secrets-store-gke.csi.k8s.io
        # (cloud.google.com/secret-manager/docs/secret-manager-managed-csi-component).
        Manifest(
            self,
            "hf-token",
            manifest={
                "apiVersion": "secrets-store.csi.x-k8s.io/v1",
                "kind": "SecretProviderClass",
                "metadata": {"name": "hf-token", "namespace": self.props.namespace},
                "spec": {
                    "provider": "gke",
                    "parameters": {
                        "secrets": (
                            f'- resourceName: "projects/{self.props.project}/secrets/{secret}/versions/latest"\n'
                            '  path: "token"\n'
                        )
                    },
                },
            },
        )
        return DeploymentV1SpecTemplateSpecVolume(
            name="hf-token",
            csi=DeploymentV1SpecTemplateSpecVolumeCsi(
                driver="secrets-store-gke.csi.k8s.io",
                read_only=True,
                volume_attributes={"secretProviderClass": "hf-token"},
            ),
        )

    # Around the Deployment.

    def _load_balancer(self) -> ServiceV1:
        props = self.props
        return ServiceV1(
            self,
            "service",
            metadata=ServiceV1Metadata(
                name=NAME,
                namespace=props.namespace,
                labels=LABELS,
                # An internal passthrough Network Load Balancer: Cloud Run reaches the Pods
                # through the VPC; a ClusterIP would be reachable only inside the cluster.
                annotations={
                    "networking.gke.io/load-balancer-type": "Internal",
                    **({GLOBAL_ACCESS: "true"} if props.global_access else {}),
                },
            ),
            spec=ServiceV1Spec(
                type="LoadBalancer",
                load_balancer_ip=props.load_balancer_ip,
                load_balancer_source_ranges=list(props.allowed_sources),
                # Keeps the caller's address, so the NetworkPolicy below can check it.
                external_traffic_policy="Local",
                selector=LABELS,
                port=[ServiceV1SpecPort(name=PORT_NAME, port=props.port, target_port=str(props.port), protocol="TCP")],
            ),
        )

    def _disruption_budget(self) -> PodDisruptionBudgetV1:
        props = self.props
        return disruption_budget(self, name=NAME, namespace=props.namespace, labels=LABELS)

    def _network_policy(self) -> NetworkPolicyV1:
        props = self.props
        return NetworkPolicyV1(
            self,
            "network-policy",
            metadata=NetworkPolicyV1Metadata(name=NAME, namespace=props.namespace),
            spec=NetworkPolicyV1Spec(
                pod_selector=NetworkPolicyV1SpecPodSelector(match_labels=LABELS),
                policy_types=["Ingress"],
                ingress=[
                    NetworkPolicyV1SpecIngress(
                        # The one port, serving and /metrics alike (PORT_NAME, scraped below).
                        ports=[NetworkPolicyV1SpecIngressPorts(port=str(props.port), protocol="TCP")],
                        from_=[
                            *(
                                NetworkPolicyV1SpecIngressFrom(ip_block=NetworkPolicyV1SpecIngressFromIpBlock(cidr=c))
                                for c in (*props.allowed_sources, *HEALTH_CHECK_RANGES)
                            ),
                            # Managed Prometheus scrapes /metrics from its collectors.
                            NetworkPolicyV1SpecIngressFrom(
                                namespace_selector=NetworkPolicyV1SpecIngressFromNamespaceSelector(
                                    match_labels={"kubernetes.io/metadata.name": MANAGED_PROMETHEUS_NAMESPACE}
                                )
                            ),
                        ],
                    )
                ],
            ),
        )

    def _pod_monitoring(self) -> Manifest:
        props = self.props
        return Manifest(
            self,
            "pod-monitoring",
            manifest={
                "apiVersion": "monitoring.googleapis.com/v1",
                "kind": "PodMonitoring",
                "metadata": {"name": NAME, "namespace": props.namespace},
                "spec": {
                    "selector": {"matchLabels": LABELS},
                    "endpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": "15s"}],
                },
            },
        )

    def _autoscaler(self) -> HorizontalPodAutoscalerV2:
        props = self.props
        return autoscaler(
            self,
            deployment=NAME,
            namespace=props.namespace,
            replicas=props.settings,
            metric=pods_metric(QUEUE_METRIC, average=props.settings.queue_target),
            # A new server takes minutes to load; give back GPUs slowly, one at a time.
            behavior=HorizontalPodAutoscalerV2SpecBehavior(
                scale_down=[
                    HorizontalPodAutoscalerV2SpecBehaviorScaleDown(
                        stabilization_window_seconds=600,
                        select_policy="Min",
                        policy=[
                            HorizontalPodAutoscalerV2SpecBehaviorScaleDownPolicy(
                                type="Pods", value=1, period_seconds=300
                            )
                        ],
                    )
                ]
            ),
        )
