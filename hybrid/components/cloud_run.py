"""A Cloud Run service with its own identity and private egress; others are granted roles on its ``target``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

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
from cdktf_cdktf_provider_google.secret_manager_secret_iam_member import SecretManagerSecretIamMember
from cdktf_cdktf_provider_google_beta.google_project_service_identity import GoogleProjectServiceIdentity
from constructs import Construct

from hybrid.components.grants import ALL_USERS, Grantable, IapRunService, Project, RunService, Secret
from hybrid.components.metrics_sidecar import MetricsSidecar
from hybrid.components.roles import IAP_ACCESSOR, INVOKER, LOG_WRITER, METRIC_WRITER
from hybrid.components.service_account import ServiceAccount
from hybrid.config import CloudRunSizing, GpuServiceSizing

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
RUNTIME_ROLES = (LOG_WRITER, METRIC_WRITER)


VpcAccess = TypeVar("VpcAccess", CloudRunV2JobTemplateTemplateVpcAccess, CloudRunV2ServiceTemplateVpcAccess)


@dataclass(frozen=True)
class PrivateEgress:
    """Where a service's private traffic enters the VPC: Direct VPC egress from ``subnetwork``,
    tagged ``tag`` for egress firewall rules. Only private ranges go that way; the rest leaves
    Cloud Run directly (cloud.google.com/run/docs/configuring/vpc-direct-vpc)."""

    network: str
    subnetwork: str
    tag: str

    def job_vpc_access(self) -> CloudRunV2JobTemplateTemplateVpcAccess:
        return self._vpc_access(
            CloudRunV2JobTemplateTemplateVpcAccess, CloudRunV2JobTemplateTemplateVpcAccessNetworkInterfaces
        )

    def vpc_access(self) -> CloudRunV2ServiceTemplateVpcAccess:
        return self._vpc_access(CloudRunV2ServiceTemplateVpcAccess, CloudRunV2ServiceTemplateVpcAccessNetworkInterfaces)

    def _vpc_access(self, access: Callable[..., VpcAccess], interface: Callable[..., object]) -> VpcAccess:
        """A job's or a service's Direct VPC egress: the same fields in the two resources' own structs."""
        interfaces = [interface(network=self.network, subnetwork=self.subnetwork, tags=[self.tag])]
        return access(network_interfaces=interfaces, egress="PRIVATE_RANGES_ONLY")


@dataclass(frozen=True)
class ConnectorEgress:
    """Where a service's private traffic enters the VPC in connector mode: through the Serverless
    VPC Access ``connector``, private ranges only (cloud.google.com/run/docs/configuring/vpc-connectors),
    so an internal Cloud Run service is called at its internal load balancer's address."""

    connector: str

    def job_vpc_access(self) -> CloudRunV2JobTemplateTemplateVpcAccess:
        return CloudRunV2JobTemplateTemplateVpcAccess(connector=self.connector, egress="PRIVATE_RANGES_ONLY")

    def vpc_access(self) -> CloudRunV2ServiceTemplateVpcAccess:
        return CloudRunV2ServiceTemplateVpcAccess(connector=self.connector, egress="PRIVATE_RANGES_ONLY")


# A service's or a job's way into the VPC, by [network] egress.
Egress = PrivateEgress | ConnectorEgress


@dataclass(frozen=True)
class CloudRunServiceProps:
    name: str
    project: str
    region: str
    image: str
    deletion_protection: bool
    # None: the service calls nothing private and stays out of the VPC.
    egress: Egress | None
    # The environment file's [services.<service>]: size, scaling, ingress, the secrets it names and,
    # for a model server, its GPUs. Its defaults are the service's.
    settings: CloudRunSizing
    env: tuple[tuple[str, str], ...] = ()
    # (variable, Secret Manager secret id) beside the file's: the latest version, read at startup.
    secrets: tuple[tuple[str, str], ...] = ()
    container_port: int = 8080
    args: tuple[str, ...] = ()
    # Its Prometheus metrics to Cloud Monitoring by a sidecar (hybrid/components/metrics_sidecar.py),
    # configured by this secret; None: no sidecar.
    metrics_config_secret: str | None = None

    @property
    def all_secrets(self) -> tuple[tuple[str, str], ...]:
        return tuple({**self.settings.secrets, **dict(self.secrets)}.items())


class CloudRunService(Construct):
    """One Cloud Run service: gen2, private ranges into the VPC (Direct VPC egress or a connector) if it needs any."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        props: CloudRunServiceProps,
        *,
        service_account: ServiceAccount,
        same_as: CloudRunService | None = None,
    ) -> None:
        """``same_as``: the same service in another region, run by the same account, whose grants
        this one relies on rather than repeat (two bindings of one role to one member would
        each remove it on destroy)."""
        super().__init__(scope, id_)
        self.project, self.region = props.project, props.region
        self.service_account = service_account
        settings = props.settings
        gpu = settings if isinstance(settings, GpuServiceSizing) else None
        limits = {"cpu": str(settings.cpu), "memory": settings.memory}
        if gpu:
            limits["nvidia.com/gpu"] = str(gpu.gpus)
        # Granted before the revision is created: a revision that references a secret it may
        # not read fails to start (cloud.google.com/run/docs/configuring/services/secrets#access-secret).
        self.secret_grants: list[SecretManagerSecretIamMember] = (
            same_as.secret_grants
            if same_as
            else [
                Secret(secret).grant_read(self, service_account)
                for secret in sorted({secret for _, secret in props.all_secrets})
            ]
        )
        # Another region's copy scrapes by the same RunMonitoring secret (Secret Manager is
        # global), so it makes neither the secret nor its grant again.
        self.sidecar: MetricsSidecar | None = (
            same_as.sidecar
            if same_as
            else MetricsSidecar(
                self,
                "metrics",
                secret_id=props.metrics_config_secret,
                project=props.project,
                region=props.region,
                reader=service_account,
            )
            if props.metrics_config_secret
            else None
        )
        sidecar = self.sidecar
        env = (*props.env, *(sidecar.env if sidecar else ()))

        self.service = CloudRunV2Service(
            self,
            "service",
            name=props.name,
            location=props.region,
            ingress=settings.ingress,
            deletion_protection=props.deletion_protection,
            depends_on=[*self.secret_grants, *([sidecar.grant] if sidecar else [])] or None,
            template=CloudRunV2ServiceTemplate(
                service_account=service_account.email,
                execution_environment="EXECUTION_ENVIRONMENT_GEN2",
                timeout=f"{settings.timeout_seconds}s",
                max_instance_request_concurrency=settings.concurrency,
                scaling=CloudRunV2ServiceTemplateScaling(
                    min_instance_count=settings.min_instances, max_instance_count=settings.max_instances
                ),
                vpc_access=props.egress.vpc_access() if props.egress else None,
                node_selector=CloudRunV2ServiceTemplateNodeSelector(accelerator=gpu.gpu_type) if gpu else None,
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
                            cpu_idle=not settings.cpu_always_allocated,
                            startup_cpu_boost=settings.startup_cpu_boost,
                        ),
                        env=[*_plain_env(env), *_secret_env(props.all_secrets)] or None,
                        startup_probe=MODEL_STARTUP_PROBE if gpu else STARTUP_PROBE,
                        liveness_probe=LIVENESS_PROBE,
                    ),
                    *([sidecar.container()] if sidecar else []),
                ],
                volumes=[sidecar.volume()] if sidecar else None,
            ),
        )
        # Made here, whoever owns the account: what this service does, its identity may do.
        for role in () if same_as else RUNTIME_ROLES:
            self.grant_project_role(role)

    @property
    def uri(self) -> str:
        return self.service.uri

    @property
    def target(self) -> RunService:
        """This service as a resource others are granted roles on."""
        return RunService(self.project, self.region, self.service.name)

    def grant_project_role(self, role: str) -> None:
        """The service's identity holds ``role`` on the project (binding ``<service>/role-<name>``),
        for what the service does, whichever stack owns the identity."""
        Project(self.project).grant_role(self, role, self.service_account)

    def grant_invoke(self, caller: CloudRunService | ServiceAccount) -> None:
        """``caller`` (a service, by its identity, or a workload's account) may invoke this service:
        ``<service>/invoker-<caller's account id>``."""
        account = caller if isinstance(caller, ServiceAccount) else caller.service_account
        self._grant_invoke(account.node.id, account)

    def grant_public_invoke(self) -> None:
        """Anyone may invoke it (it checks who calls itself, or serves a public page): ``invoker-public``."""
        self._grant_invoke("public", ALL_USERS)

    def _grant_invoke(self, who: str, to: Grantable) -> None:
        self.target.bind(self, f"invoker-{who}", INVOKER, to.member)

    def require_iap(self, *, members: list[str], beta: TerraformProvider, at_load_balancer: bool = False) -> None:
        """Put Identity-Aware Proxy in front: only ``members`` get through, signed in.

        hashicorp/google 6.50.0 has ``iap_enabled`` and the IAP IAM resources in its beta
        provider only (cloud.google.com/run/docs/securing/identity-aware-proxy-cloud-run).
        ``at_load_balancer``: IAP is the load balancer's backend service's, which binds ``members``
        itself; the service lets IAP's agent invoke it, and no one else
        (cloud.google.com/iap/docs/enabling-cloud-run).
        """
        agent = GoogleProjectServiceIdentity(
            self, "iap-agent", project=self.project, service="iap.googleapis.com", provider=beta
        )
        self._grant_invoke("iap", agent)
        if at_load_balancer:
            return
        self.service.provider = beta
        self.service.add_override("iap_enabled", True)
        behind_iap = IapRunService(self.project, self.region, self.service.name, beta)
        for index, member in enumerate(members):
            behind_iap.bind(self, f"iap-access-{index}", IAP_ACCESSOR, member)


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
