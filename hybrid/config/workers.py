"""Typed settings for the background workers tier: batch jobs pulled from Pub/Sub by workers on a
GKE Standard cluster, with their files in a Cloud Storage bucket."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hybrid.config.services import EnvVarName, ImageRef, Memory
from hybrid.config.validation import Bounded, Settings, between, matching

# cloud.google.com/compute/docs/machine-resource: <series>-<type>[-<vCPUs>], e.g. e2-standard-4.
MachineType = Annotated[
    str, matching(r"[a-z][a-z0-9]*-[a-z0-9]+(-[a-z0-9]+)*", "a Compute Engine machine type like e2-standard-4")
]
# kubernetes.io/docs/concepts/configuration/manage-resources-containers#meaning-of-cpu: whole or
# fractional CPUs, or millicpu.
CpuQuantity = Annotated[str, matching(r"[1-9][0-9]*m|[0-9]+(\.[0-9]+)?", "a CPU quantity like 500m or 2")]
# cloud.google.com/kubernetes-engine/quotas: at most 1,000 nodes per node pool zone.
NodeCount = Annotated[int, between(0, 1000)]


class StandardClusterSettings(Settings):
    """The workers' GKE Standard cluster; its control plane is reached as [cluster] says for the
    Autopilot one (control_plane_access, authorized_networks)."""

    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    deletion_protection: bool


class SpotPoolSettings(Settings):
    """The workers' own pool: Spot VMs, from 0 nodes when nothing waits."""

    machine_type: MachineType = "e2-standard-4"
    max_nodes: Annotated[int, between(1, 1000)] = 10


class OnDemandPoolSettings(Bounded):
    """Standard VMs: the system Pods, and the workers when Spot capacity is gone."""

    machine_type: MachineType = "e2-standard-4"
    bounds = ("min_nodes", "max_nodes")
    min_nodes: NodeCount = 1
    max_nodes: Annotated[int, between(1, 1000)] = 3


class WorkerDeploymentSettings(Bounded):
    image: ImageRef | None = None  # default: <env registry>/worker:<services.image_tag>
    cpu: CpuQuantity = "1"
    memory: Memory = "1Gi"
    # At least one: a HorizontalPodAutoscaler scales to zero only behind the alpha HPAScaleToZero
    # feature gate (kubernetes.io/docs/reference/command-line-tools-reference/feature-gates/), and the
    # worker's sweeper (expiry, stuck batches) must run even when the queue is empty.
    bounds = ("min_replicas", "max_replicas")
    min_replicas: Annotated[int, between(1, 1000)] = 1
    max_replicas: Annotated[int, between(1, 1000)] = 10
    # Scale out when more than this many line messages wait per worker.
    target_undelivered_per_replica: Annotated[int, between(1, 100_000)] = 50
    # The worker's settings the stack does not decide (services/worker/settings.py), e.g. LOG_LEVEL.
    env: dict[EnvVarName, str] = Field(default_factory=dict)


class QueueSettings(Bounded):
    """The line subscription's delivery (cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions)."""

    # cloud.google.com/pubsub/docs/handling-failures: 5 to 100 delivery attempts.
    max_delivery_attempts: Annotated[int, between(5, 100)] = 5
    # ackDeadlineSeconds: 10 to 600 seconds.
    ack_deadline_seconds: Annotated[int, between(10, 600)] = 600
    bounds = ("min_backoff_seconds", "max_backoff_seconds")
    # RetryPolicy's minimumBackoff and maximumBackoff: 0 to 600 seconds.
    min_backoff_seconds: Annotated[int, between(0, 600)] = 10
    max_backoff_seconds: Annotated[int, between(0, 600)] = 600
    # messageRetentionDuration: 10 minutes to 31 days (cloud.google.com/pubsub/docs/subscription-properties);
    # in whole days here.
    retention_days: Annotated[int, between(1, 31)] = 7


class WorkersTier(Settings):
    # Off unless the file turns it on: the tier costs a cluster's fee and its nodes.
    enabled: bool = False
    cluster: StandardClusterSettings = StandardClusterSettings(deletion_protection=True)
    spot_pool: SpotPoolSettings = SpotPoolSettings()
    on_demand_pool: OnDemandPoolSettings = OnDemandPoolSettings()
    deployment: WorkerDeploymentSettings = WorkerDeploymentSettings()
    queue: QueueSettings = QueueSettings()
    # Input and output files are deleted this many days after they were written
    # (cloud.google.com/storage/docs/lifecycle#age: an Age condition in whole days); at most ten
    # years here, a bound of ours.
    bucket_lifecycle_days: Annotated[int, between(1, 3650)] = 30
    # Flow control: line messages a worker holds at once (the worker's own bound, 1 to 1000).
    max_outstanding_messages: Annotated[int, between(1, 1000)] = 16
