"""Layer `inference`: vLLM on the cluster, in a stack of its own because its kubernetes
provider is configured from the cluster (endpoint read at plan time, short-lived token).

Google identities for the model server and the metrics adapter (Workload Identity,
only what each needs), then the Kubernetes objects: namespace, service account,
the vLLM server behind an internal load balancer, and the metrics adapter its
autoscaler reads the queue length through.
"""

from __future__ import annotations

from constructs import Construct

from hybrid.catalog import MODELS
from hybrid.components.grants import Bucket, Secret
from hybrid.components.metrics_adapter import CustomMetricsAdapter, CustomMetricsAdapterProps
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.components.vllm_server import VllmServer, VllmServerProps
from hybrid.config import Environment
from hybrid.layer import LayerStack
from stacks.cluster import ClusterStack, deploys_into, workload_namespace
from stacks.network import NetworkStack
from stacks.registry import RegistryStack, mirrored_image

NAMESPACE = "inference"
MODEL_SERVER_ACCOUNT = "vllm"


class InferenceStack(LayerStack):
    def __init__(
        self, scope: Construct, env: Environment, network: NetworkStack, registry: RegistryStack, cluster: ClusterStack
    ) -> None:
        # After the registry: the weights' bucket, granted on below, and the image's mirror.
        super().__init__(scope, env, "inference", network, registry, cluster)
        project, names, settings = env.project_id, env.names, env.inference.gke_server

        deploys_into(self, env, names.cluster)

        server_identity = self._server_identity()
        adapter_identity = CustomMetricsAdapter.reader_account(
            self,
            "metrics-adapter-identity",
            ServiceAccountProps(
                account_id=names.metrics_adapter_account,
                display_name="Custom metrics adapter",
                description="Reads Cloud Monitoring metrics for the model servers' autoscaler.",
            ),
            project=project,
        )

        namespace, account = workload_namespace(
            self, env, NAMESPACE, "baseline", ("model-server-account", MODEL_SERVER_ACCOUNT), server_identity
        )
        self.vllm = VllmServer(
            self,
            "vllm",
            VllmServerProps(
                project=project,
                namespace=namespace.metadata.name,
                service_account=account.name,
                image=mirrored_image(env, settings.image),
                settings=settings,
                quantization=MODELS[settings.model].quantization,
                port=env.network.inference_port,
                load_balancer_ip=network.outputs.inference_address,
                # The orchestrators on Cloud Run, in every region, and the batch workers' Pods when there are any.
                allowed_sources=tuple(
                    str(cidr)
                    for cidr in (*env.network.cloud_run_cidrs(env.service_regions), env.network.workers_pods_cidr)
                    if cidr is not None
                ),
                global_access=len(env.service_regions) > 1,
            ),
        )
        CustomMetricsAdapter(
            self, "metrics-adapter", CustomMetricsAdapterProps(project=project), google_account=adapter_identity
        )

    def _server_identity(self) -> ServiceAccount:
        """The model server's Google account: reads the token and the weights' bucket, when it has them."""
        names, settings = self.env.names, self.env.inference.gke_server
        server_identity = ServiceAccount(
            self,
            "model-server-identity",
            ServiceAccountProps(
                account_id=names.model_server_account,
                display_name="vLLM model server",
                description="Reads the model weights and the Hugging Face token; nothing else.",
            ),
        )
        if settings.hf_token_secret:
            Secret(settings.hf_token_secret).grant_read(self, server_identity, id_="hf-token-access")
        if settings.weights != "pvc" and settings.weights_bucket:  # validated: gcsfuse and streamer name their bucket
            Bucket(settings.weights_bucket).grant_read(self, server_identity, id_="weights-access")
        return server_identity
