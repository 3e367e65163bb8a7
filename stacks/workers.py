"""Layers `workers` and `workers-k8s`: the background workers tier that runs batch jobs
(OpenAI's Batch API), made only when the environment file enables [workers].

`workers`: a private GKE Standard cluster in the network's workers subnet (Workload Identity,
Dataplane V2, no default node pool) with a Spot pool that scales from zero and an on-demand
fallback pool; the bucket of batch files; the line topic, its subscription (exponential retry,
dead-letter policy) and the dead-letter topic and subscription; and IAM, least privilege: the
worker's identity, the orchestrator's additions, the Pub/Sub service agent's dead-lettering.

`workers-k8s`: the worker's Kubernetes objects, in a stack of its own because its kubernetes
provider is configured from the cluster (as `inference` is from the models' cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from cdktf import TerraformOutput
from cdktf_cdktf_provider_google_beta.google_project_service_identity import GoogleProjectServiceIdentity
from cdktf_cdktf_provider_google_beta.provider import GoogleBetaProvider
from constructs import Construct

from hybrid.components.batch_bucket import BatchBucket, BatchBucketProps
from hybrid.components.batch_worker import BatchWorker, BatchWorkerProps
from hybrid.components.grants import Project, grant_in_stack
from hybrid.components.metrics_adapter import CustomMetricsAdapter, CustomMetricsAdapterProps
from hybrid.components.pubsub_queue import PubSubQueue, PubSubQueueProps
from hybrid.components.roles import VERTEX_AI_USER
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.components.standard_cluster import NodePoolProps, StandardCluster, StandardClusterProps
from hybrid.config import Environment
from hybrid.layer import LayerStack
from hybrid.service_contract import Wiring, container_env, service_settings
from services.worker.settings import WorkerSettings
from stacks.cluster import deploys_into, placement, workload_namespace
from stacks.database import DatabaseStack
from stacks.network import NetworkOutputs, NetworkStack
from stacks.registry import RegistryStack, repository, service_image

NAMESPACE = "batch"
WORKER_ACCOUNT = "worker"
# The batch files' prefixes: inputs as uploaded (the orchestrator's), outputs per batch (the worker's).
INPUTS, OUTPUTS = "inputs/", "outputs/"


@dataclass(frozen=True)
class WorkersOutputs:
    """What the workers' Kubernetes layer uses of this one."""

    # The identity the metrics adapter in the workers cluster reads Cloud Monitoring as.
    metrics_adapter_account: ServiceAccount


class WorkersStack(LayerStack):
    def __init__(
        self,
        scope: Construct,
        env: Environment,
        network: NetworkStack,
        registry: RegistryStack,
        database: DatabaseStack,
    ) -> None:
        # After the registry: the services' repository is granted on below.
        super().__init__(scope, env, "workers", network, registry, database)
        names, workers, project = env.names, env.workers, env.project_id
        worker, orchestrator = database.outputs.worker_account, database.outputs.orchestrator_account
        assert worker is not None  # made when enabled

        self.cluster = self._cluster(network.outputs)
        self.bucket = BatchBucket(
            self,
            "batch-files",
            BatchBucketProps(
                name=names.batch_bucket, location=env.region, delete_after_days=workers.bucket_lifecycle_days
            ),
        )
        self.queue = self._queue()

        # The worker: pulls both subscriptions; republishes stuck batches' lines (its sweeper) and
        # nothing else to the line topic; writes and reads results under outputs/ only; calls
        # Vertex AI. Its Cloud SQL login comes with its IAM database user (database layer).
        self.queue.grant_consume(worker)
        self.bucket.grant_write(worker, prefix=OUTPUTS)
        self.bucket.grant_read(worker, prefix=OUTPUTS)
        grant_in_stack(self, worker, "vertex-ai", VERTEX_AI_USER, Project(project))
        # The orchestrator: publishes new batches' lines, stores and reads inputs, serves outputs.
        self.queue.grant_publish(orchestrator)
        self.bucket.grant_admin(orchestrator, prefix=INPUTS)
        self.bucket.grant_read(orchestrator, prefix=OUTPUTS)

        metrics_adapter_account = CustomMetricsAdapter.reader_account(
            self,
            "metrics-adapter-identity",
            ServiceAccountProps(
                account_id=names.workers_metrics_adapter_account,
                display_name="Custom metrics adapter (workers)",
                description="Reads the batch subscription's backlog from Cloud Monitoring for the workers' autoscaler.",
            ),
            project=project,
        )
        TerraformOutput(self, "workers_cluster_name", value=self.cluster.cluster.name)
        TerraformOutput(self, "batch_bucket", value=self.bucket.bucket.name)
        self.outputs = WorkersOutputs(metrics_adapter_account=metrics_adapter_account)

    def _cluster(self, network: NetworkOutputs) -> StandardCluster:
        """The workers' GKE Standard cluster: a Spot pool from zero, an on-demand pool beside it."""
        env, names, workers = self.env, self.env.names, self.env.workers
        assert network.workers_subnet_id is not None  # made when enabled
        nodes = ServiceAccount(
            self,
            "node-identity",
            ServiceAccountProps(
                account_id=names.workers_node_account,
                display_name="GKE workers nodes",
                description="Runs the workers cluster's nodes: logs, metrics and image pulls only.",
            ),
        )
        return StandardCluster(
            self,
            "workers",
            StandardClusterProps(
                placement(
                    env,
                    names.workers_cluster,
                    network.network_id,
                    (network.workers_subnet_id, names.workers_pods_range, names.workers_services_range),
                    workers.cluster,
                ),
                pools=(
                    NodePoolProps.spot_pool(names.spot_pool, workers.spot_pool),
                    NodePoolProps.on_demand_pool(names.on_demand_pool, workers.on_demand_pool),
                ),
            ),
            node_account=nodes,
            pulls_from=(repository(env, names.registry),),  # the worker's image
        )

    def _queue(self) -> PubSubQueue:
        """The line topic and subscription, with the dead letters Pub/Sub moves as its agent."""
        env, names, project = self.env, self.env.names, self.env.project_id
        # The Pub/Sub service agent is created as Pub/Sub is first used, and a role cannot be granted
        # to it before: ask for it first (cloud.google.com/iam/docs/create-service-agents).
        # hashicorp/google 6.50.0 has google_project_service_identity in its beta provider only.
        beta = GoogleBetaProvider(self, "google-beta", project=project, region=env.region)
        pubsub_agent = GoogleProjectServiceIdentity(
            self, "pubsub-agent", project=project, service="pubsub.googleapis.com", provider=beta
        )
        return PubSubQueue(
            self,
            "batch-queue",
            PubSubQueueProps(
                topic=names.batch_topic,
                subscription=names.batch_subscription,
                dead_letter_topic=names.dead_letter_topic,
                dead_letter_subscription=names.dead_letter_subscription,
                settings=env.workers.queue,
            ),
            messages="lines",
            dead_letter_agent=pubsub_agent,
        )


class WorkersK8sStack(LayerStack):
    def __init__(
        self,
        scope: Construct,
        env: Environment,
        workers: WorkersStack,
        database: DatabaseStack,
    ) -> None:
        super().__init__(scope, env, "workers-k8s", workers)
        names, project, deployment = env.names, env.project_id, env.workers.deployment
        worker = database.outputs.worker_account
        assert worker is not None  # made when enabled
        deploys_into(self, env, names.workers_cluster)
        namespace, account = workload_namespace(
            self, env, NAMESPACE, "restricted", ("worker-account", WORKER_ACCOUNT), worker
        )
        db = database.outputs
        wiring = Wiring(
            # As the services layer writes it: the address the network layer reserves, as a literal.
            inference_url=f"http://{env.network.inference_address}:{env.network.inference_port}/v1",
            database_host=db.host,
            database_server_ca=db.server_ca,
            database_name=db.database_name,
            worker_database_user=worker.database_user_name,
        )
        settings = cast(WorkerSettings, service_settings(env, wiring, only=("worker",))["worker"])
        self.worker = BatchWorker(
            self,
            "worker",
            BatchWorkerProps(
                namespace=namespace.metadata.name,
                service_account=account.name,
                image=service_image(env, "worker", deployment.image),
                settings=deployment,
                env=tuple(container_env(env, wiring, "worker").items()),
                port=settings.port,
                shutdown_seconds=int(settings.shutdown_seconds),
                subscription=names.batch_subscription,
            ),
        )
        CustomMetricsAdapter(
            self,
            "metrics-adapter",
            CustomMetricsAdapterProps(project=project),
            google_account=workers.outputs.metrics_adapter_account,
        )
