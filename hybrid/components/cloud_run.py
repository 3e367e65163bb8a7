"""A Cloud Run service with its own identity and private egress; others are granted roles on its ``target``."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import TerraformProvider
from cdktf_cdktf_provider_google.cloud_run_v2_job import (
    CloudRunV2JobTemplateTemplateVpcAccess,
    CloudRunV2JobTemplateTemplateVpcAccessNetworkInterfaces,
)
from cdktf_cdktf_provider_google.cloud_run_v2_service import (
    CloudRunV2Service,
    CloudRunV2ServiceTemplate,
    CloudRunV2ServiceTemplateContainers,
    CloudRunV2ServiceTemplateContainersEnv,
    CloudRunV2ServiceTemplateContainersEnvValueSource,
    CloudRunV2ServiceTemplateContainersEnvValueSourceSecretKeyRef,
    CloudRunV2ServiceTemplateContainersLivenessProbe,
    CloudRunV2ServiceTemplateContainersLivenessProbeHttpGet,
    CloudRunV2ServiceTemplateContainersPorts,
    CloudRunV2ServiceTemplateContainersResources,
    CloudRunV2ServiceTemplateContainersStartupProbe,
    CloudRunV2ServiceTemplateContainersStartupProbeHttpGet,
    CloudRunV2ServiceTemplateNodeSelector,
    CloudRunV2ServiceTemplateScaling,
    CloudRunV2ServiceTemplateVpcAccess,
    CloudRunV2ServiceTemplateVpcAccessNetworkInterfaces,
)
from cdktf_cdktf_provider_google_beta.google_project_service_identity import GoogleProjectServiceIdentity
from constructs import Construct

from hybrid.components.grants import (
    SECRET_ACCESSOR,
    IapRunService,
    Principal,
    Project,
    RunService,
    Secret,
    grant,
    role_id,
)
from hybrid.components.service_account import ServiceAccount

# The reference architecture's probes (docs/reference-architecture.md): startup on /health after 5 s, every 3 s, 5 failures; liveness every 30 s.
STARTUP_PROBE = CloudRunV2ServiceTemplateContainersStartupProbe(
    http_get=CloudRunV2ServiceTemplateContainersStartupProbeHttpGet(path="/health"),
    initial_delay_seconds=5,
    period_seconds=3,
    failure_threshold=5,
)
LIVENESS_PROBE = CloudRunV2ServiceTemplateContainersLivenessProbe(
    http_get=CloudRunV2ServiceTemplateContainersLivenessProbeHttpGet(path="/health"), period_seconds=30
)
# A model server loads its weights first: allow it up to 10 minutes (60 x 10 s) to start.
MODEL_STARTUP_PROBE = CloudRunV2ServiceTemplateContainersStartupProbe(
    http_get=CloudRunV2ServiceTemplateContainersStartupProbeHttpGet(path="/health"),
    initial_delay_seconds=0,
    period_seconds=10,
    failure_threshold=60,
)
# What every service does at run time: write logs and metrics.
RUNTIME_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
INVOKER = "roles/run.invoker"


@dataclass(frozen=True)
class PrivateEgress:
    """Where a service's private traffic enters the VPC: Direct VPC egress from ``subnetwork``,
    tagged ``tag`` for egress firewall rules. Only private ranges go that way; the rest leaves
    Cloud Run directly (cloud.google.com/run/docs/configuring/vpc-direct-vpc)."""

    network: str
    subnetwork: str
    tag: str

    def job_vpc_access(self) -> CloudRunV2JobTemplateTemplateVpcAccess:
        return CloudRunV2JobTemplateTemplateVpcAccess(
            network_interfaces=[
                CloudRunV2JobTemplateTemplateVpcAccessNetworkInterfaces(
                    network=self.network, subnetwork=self.subnetwork, tags=[self.tag]
                )
            ],
            egress="PRIVATE_RANGES_ONLY",
        )

    def vpc_access(self) -> CloudRunV2ServiceTemplateVpcAccess:
        return CloudRunV2ServiceTemplateVpcAccess(
            network_interfaces=[
                CloudRunV2ServiceTemplateVpcAccessNetworkInterfaces(
                    network=self.network, subnetwork=self.subnetwork, tags=[self.tag]
                )
            ],
            egress="PRIVATE_RANGES_ONLY",
        )


@dataclass(frozen=True)
class Gpu:
    """The GPUs of each instance, and whether capacity is reserved in a second zone."""

    type: str
    count: int
    zonal_redundancy: bool


@dataclass(frozen=True)
class CloudRunServiceProps:
    name: str
    project: str
    region: str
    image: str
    cpu: int
    memory: str
    min_instances: int
    max_instances: int
    concurrency: int
    timeout_seconds: int
    cpu_always_allocated: bool
    startup_cpu_boost: bool
    ingress: str
    deletion_protection: bool
    # None: the service calls nothing private and stays out of the VPC.
    egress: PrivateEgress | None
    env: tuple[tuple[str, str], ...] = ()
    # (variable, Secret Manager secret id): the latest version, read at startup.
    secrets: tuple[tuple[str, str], ...] = ()
    container_port: int = 8080
    args: tuple[str, ...] = ()
    gpu: Gpu | None = None


class CloudRunService(Construct):
    """One Cloud Run service: gen2, private ranges into the VPC by Direct VPC egress if it needs any."""

    def __init__(
        self, scope: Construct, id_: str, props: CloudRunServiceProps, *, service_account: ServiceAccount
    ) -> None:
        super().__init__(scope, id_)
        self.project, self.region = props.project, props.region
        self.service_account = service_account
        gpu = props.gpu
        limits = {"cpu": str(props.cpu), "memory": props.memory}
        if gpu:
            limits["nvidia.com/gpu"] = str(gpu.count)
        # Granted before the revision is created: a revision that references a secret it may
        # not read fails to start (cloud.google.com/run/docs/configuring/services/secrets#access-secret).
        secret_grants = [
            grant(self, f"secret-{secret}", role=SECRET_ACCESSOR, to=service_account, on=Secret(secret))
            for secret in sorted({secret for _, secret in props.secrets})
        ]

        self.service = CloudRunV2Service(
            self,
            "service",
            name=props.name,
            location=props.region,
            ingress=props.ingress,
            deletion_protection=props.deletion_protection,
            depends_on=secret_grants or None,
            template=CloudRunV2ServiceTemplate(
                service_account=service_account.email,
                execution_environment="EXECUTION_ENVIRONMENT_GEN2",
                timeout=f"{props.timeout_seconds}s",
                max_instance_request_concurrency=props.concurrency,
                scaling=CloudRunV2ServiceTemplateScaling(
                    min_instance_count=props.min_instances, max_instance_count=props.max_instances
                ),
                vpc_access=props.egress.vpc_access() if props.egress else None,
                node_selector=CloudRunV2ServiceTemplateNodeSelector(accelerator=gpu.type) if gpu else None,
                gpu_zonal_redundancy_disabled=(not gpu.zonal_redundancy) if gpu else None,
                containers=[
                    CloudRunV2ServiceTemplateContainers(
                        image=props.image,
                        args=list(props.args) or None,
                        ports=CloudRunV2ServiceTemplateContainersPorts(container_port=props.container_port),
                        resources=CloudRunV2ServiceTemplateContainersResources(
                            limits=limits,
                            # cpu_idle=false keeps CPU allocated between requests (the reference architecture's
                            # comment says the opposite; its intent needs false).
                            cpu_idle=not props.cpu_always_allocated,
                            startup_cpu_boost=props.startup_cpu_boost,
                        ),
                        env=[*_plain_env(props.env), *_secret_env(props.secrets)] or None,
                        startup_probe=MODEL_STARTUP_PROBE if gpu else STARTUP_PROBE,
                        liveness_probe=LIVENESS_PROBE,
                    )
                ],
            ),
        )
        # Made here, whoever owns the account: what this service does, its identity may do.
        for role in RUNTIME_ROLES:
            grant(self, role_id(role), role=role, to=service_account, on=Project(self.project))

    @property
    def uri(self) -> str:
        return self.service.uri

    @property
    def target(self) -> RunService:
        """This service as a resource others are granted roles on (``INVOKER``: who may call it)."""
        return RunService(self.project, self.region, self.service.name)

    def require_iap(self, *, members: list[str], beta: TerraformProvider) -> None:
        """Put Identity-Aware Proxy in front: only ``members`` get through, signed in.

        hashicorp/google 6.50.0 has ``iap_enabled`` and the IAP IAM resources in its beta
        provider only (cloud.google.com/run/docs/securing/identity-aware-proxy-cloud-run).
        """
        self.service.provider = beta
        self.service.add_override("iap_enabled", True)
        agent = GoogleProjectServiceIdentity(
            self, "iap-agent", project=self.project, service="iap.googleapis.com", provider=beta
        )
        grant(self, "invoker-iap", role=INVOKER, to=agent, on=self.target)
        behind_iap = IapRunService(self.project, self.region, self.service.name, beta)
        for index, member in enumerate(members):
            grant(
                self, f"iap-access-{index}", role="roles/iap.httpsResourceAccessor", to=Principal(member), on=behind_iap
            )


def _plain_env(values: tuple[tuple[str, str], ...]) -> list[CloudRunV2ServiceTemplateContainersEnv]:
    return [CloudRunV2ServiceTemplateContainersEnv(name=key, value=value) for key, value in sorted(values)]


def _secret_env(secrets: tuple[tuple[str, str], ...]) -> list[CloudRunV2ServiceTemplateContainersEnv]:
    return [
        CloudRunV2ServiceTemplateContainersEnv(
            name=key,
            value_source=CloudRunV2ServiceTemplateContainersEnvValueSource(
                secret_key_ref=CloudRunV2ServiceTemplateContainersEnvValueSourceSecretKeyRef(
                    secret=secret, version="latest"
                )
            ),
        )
        for key, secret in sorted(secrets)
    ]
