"""Layer `services`: the Cloud Run tier and who may call whom.

  browser -> frontend (public or IAP), browser -> gateway (public; checks JWTs itself)
  gateway -> orchestrator (internal ingress; run.invoker for the gateway's identity only)
  orchestrator -> Cloud SQL (private IP, IAM login), -> inference, -> Vertex AI
Every service has its own identity and sends private-range traffic through the
VPC connector (egress PRIVATE_RANGES_ONLY).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.artifact_registry_repository import (
    ArtifactRegistryRepository,
    ArtifactRegistryRepositoryDockerConfig,
)
from cdktf_cdktf_provider_google_beta.provider import GoogleBetaProvider
from constructs import Construct

from hybrid.cloud_run_settings import ServiceSettings
from hybrid.components.cloud_run import CloudRunService
from hybrid.components.service_account import ServiceAccount
from hybrid.config import Environment
from hybrid.layer import LayerStack
from stacks.database import DatabaseStack
from stacks.network import NetworkStack

VERTEX_AI_USER = "roles/aiplatform.user"


class ServicesStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, network: NetworkStack, database: DatabaseStack) -> None:
        super().__init__(scope, env, "services")
        self.add_dependency(network)
        self.add_dependency(database)
        self.network = network
        settings = env.services

        self.registry = ArtifactRegistryRepository(
            self,
            "registry",
            repository_id=env.names.registry,
            location=env.region,
            format="DOCKER",
            description="Images of the platform's Cloud Run services.",
            docker_config=ArtifactRegistryRepositoryDockerConfig(immutable_tags=True),
        )

        self.inference = None
        inference_url = f"http://{network.inference_address.address}:{env.network.inference_port}/v1"
        if env.inference.placement == "cloud_run":
            gpu = env.inference.cloud_run
            self.inference = self._service(
                "inference",
                gpu,
                container_port=gpu.port,
                args=["--model", gpu.model, "--port", str(gpu.port)],
            )
            inference_url = f"{self.inference.uri}/v1"

        self.orchestrator = self._service(
            "orchestrator",
            settings.orchestrator,
            account=database.orchestrator,
            env={
                "INFERENCE_URL": inference_url,
                "VERTEX_PROJECT": env.project_id,
                "VERTEX_LOCATION": env.region,
                "PGHOST": database.postgres.instance.private_ip_address,
                "PGDATABASE": database.orchestrator_database.name,
                "PGUSER": database.orchestrator.database_user_name,
                "PGSSLMODE": "require",
                "DATABASE_AUTH": "iam",
            },
        )
        self.orchestrator.grant_project_role(VERTEX_AI_USER)
        if self.inference:
            self.inference.grant_invoke(self.orchestrator.service_account)

        self.gateway = self._service(
            "gateway", settings.gateway, env={"ORCHESTRATOR_URL": self.orchestrator.uri}
        )
        self.orchestrator.grant_invoke(self.gateway.service_account)
        self.gateway.allow_public()

        self.frontend = self._service("frontend", settings.frontend, env={"GATEWAY_URL": self.gateway.uri})
        if settings.frontend.access == "iap":
            beta = GoogleBetaProvider(self, "google-beta", project=env.project_id, region=env.region)
            self.frontend.require_iap(members=settings.iap_members, beta=beta)
        else:
            self.frontend.allow_public()

    def _service(
        self,
        role: str,
        settings: ServiceSettings,
        *,
        account: ServiceAccount | None = None,
        env: dict[str, str] | None = None,
        container_port: int = 8080,
        args: list[str] | None = None,
    ) -> CloudRunService:
        """The Cloud Run service ``role``, run by ``account`` or by a new account of its own."""
        names = self.env.names
        account = account or ServiceAccount(
            self,
            f"{role}-identity",
            account_id=names.service[role],
            display_name=f"{role} (Cloud Run)",
            description=f"Runs the {role} Cloud Run service.",
        )
        image = settings.image or (
            f"{self.env.region}-docker.pkg.dev/{self.env.project_id}/{names.registry}/{role}:{self.env.services.image_tag}"
        )
        return CloudRunService(
            self,
            role,
            name=names.service[role],
            project=self.env.project_id,
            region=self.env.region,
            image=image,
            settings=settings,
            service_account=account,
            connector=self.network.connector.id,
            deletion_protection=self.env.services.deletion_protection,
            env=env,
            container_port=container_port,
            args=args,
        )
