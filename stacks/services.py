"""Layer `services`: the Cloud Run tier and who may call whom.

  browser -> frontend (public or IAP), browser -> gateway (public; checks JWTs itself)
  gateway -> orchestrator (internal ingress; run.invoker for the gateway's identity only, whose
    ID token the orchestrator checks again itself: services/orchestrator/callers.py)
  orchestrator -> Cloud SQL (private IP, IAM login), -> inference, -> Vertex AI
Every service has its own identity; the gateway and the orchestrator (and the database
bootstrap job) send private-range traffic into the VPC by Direct VPC egress, each with a
network tag of its own, or in connector mode through the network layer's connector, the gateway
then calling the orchestrator at its internal load balancer (docs/network-egress.md); the frontend and a Cloud Run model server call nothing private. What each container is told comes from the service contract
(hybrid/service_contract.py): the services' own settings models, filled and checked here.

Any other Cloud Run service of the topology (hybrid/topology.py) is built the same way for
every one: its own account (the database layer's, if it logs in to Cloud SQL), internal unless
the topology makes it public, Direct VPC egress if it calls through the VPC, its container
env from the contract, sized by its [services.<name>] table or the defaults. Who may invoke
a Cloud Run service, but for the public ones, follows the topology's calls, for every service.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

from cdktf import TerraformOutput
from cdktf_cdktf_provider_google.apikeys_key import (
    ApikeysKey,
    ApikeysKeyRestrictions,
    ApikeysKeyRestrictionsApiTargets,
    ApikeysKeyRestrictionsBrowserKeyRestrictions,
)
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.identity_platform_config import (
    IdentityPlatformConfig,
    IdentityPlatformConfigSignIn,
    IdentityPlatformConfigSignInEmail,
)
from cdktf_cdktf_provider_google.logging_metric import LoggingMetric, LoggingMetricMetricDescriptor
from cdktf_cdktf_provider_google_beta.provider import GoogleBetaProvider
from constructs import Construct

from hybrid.components.cloud_run import CloudRunService, CloudRunServiceProps, ConnectorEgress, Egress, PrivateEgress
from hybrid.components.database_bootstrap import DatabaseBootstrapJob, DatabaseBootstrapProps
from hybrid.components.internal_lb import InternalLoadBalancer, InternalLoadBalancerProps
from hybrid.components.load_balancer import EDGE_SERVICES
from hybrid.components.roles import VERTEX_AI_USER
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.config import CloudRunSizing, Environment
from hybrid.layer import LayerStack
from hybrid.network_constants import REDIS_TLS_PORT
from hybrid.service_contract import Wiring, container_env, run_app_url
from hybrid.topology import Topology, for_environment
from services.gateway.settings import FALLBACK_MESSAGE
from stacks.database import DatabaseOutputs, DatabaseStack
from stacks.network import NetworkOutputs, NetworkStack
from stacks.registry import RegistryStack, service_image

# What the chat page calls with its browser key: sign-in, and refreshing the ID token
# (cloud.google.com/identity-platform/docs/use-rest-api).
IDENTITY_PLATFORM_APIS = ("identitytoolkit.googleapis.com", "securetoken.googleapis.com")
# The services built by hand below, each with parts of its own; any other is built generically.
HAND_BUILT = ("frontend", "gateway", "orchestrator")
# The services with Prometheus metrics (services/servicekit/metrics.py), exported by a sidecar.
EXPORTS_METRICS = ("gateway", "orchestrator")


class ServicesStack(LayerStack):
    def __init__(
        self,
        scope: Construct,
        env: Environment,
        network: NetworkStack,
        registry: RegistryStack,
        database: DatabaseStack,
    ) -> None:
        """Over 60 lines: the services are built in the order each needs the one before, the wiring
        growing as each URL exists, which reads best in one place."""
        super().__init__(scope, env, "services", network, registry, database)
        settings, names = env.services, env.names
        self.network: NetworkOutputs = network.outputs

        # The frontend's deterministic URL is known before it exists: the gateway admits the chat
        # page's origin without waiting for the frontend.
        project = DataGoogleProject(self, "project", project_id=env.project_id)
        # With the edge on, the browser reaches the page and its API at the edge's domain only.
        frontend_origin = env.edge.origin or run_app_url(names.service["frontend"], project.number, env.region)
        browser_key = self._sign_in(frontend_origin)

        self.inference = self._cloud_run_model_server("inference") if env.inference.placement == "cloud_run" else None
        self.spill = self._cloud_run_model_server("inference-spill") if env.inference.spills_to_cloud_run else None
        # The address the network layer reserves, from the same setting: a literal here, because
        # cdktf's HCL output mangles a Terraform reference inside a JSON string (BACKENDS).
        inference_url = (
            f"{self.inference.uri}/v1"
            if self.inference
            else f"http://{env.network.inference_address}:{env.network.inference_port}/v1"
        )

        # Built in the order each needs the one before: the orchestrator's URL goes to the
        # gateway, the gateway's to the frontend. The gateway's account comes first: the
        # orchestrator admits its ID tokens, for the orchestrator's deterministic URL.
        db = database.outputs
        gateway_account = self._account("gateway")
        wiring = Wiring(
            orchestrator_audience=run_app_url(names.service["orchestrator"], project.number, env.region),
            gateway_account=gateway_account.email,
            frontend_origin=frontend_origin,
            inference_url=inference_url,
            inference_spill_url=f"{self.spill.uri}/v1" if self.spill else None,
            database_host=db.host,
            database_server_ca=db.server_ca,
            database_name=db.database_name,
            database_user=db.orchestrator_database_user,
            # The orchestrator grants the batch worker's database user the tables it owns.
            worker_database_user=db.worker_account.database_user_name if db.worker_account else None,
            identity_platform_api_key=browser_key.key_string,
            redis_host=db.redis.host if db.redis else None,
            redis_port=str(REDIS_TLS_PORT) if db.redis else None,  # a number: checked at synth
            redis_server_ca=db.redis.server_ca_pem if db.redis else None,
        )
        deployed = for_environment(env)
        self.others = self._others(deployed, wiring, db, project.number)
        for name, other in self.others.items():
            wiring = wiring.with_url(name, other.uri)
        self.orchestrator = self._service(
            "orchestrator",
            settings.orchestrator,
            account=db.orchestrator_account,
            env=container_env(env, wiring, "orchestrator"),
        )
        self.orchestrator.grant_project_role(VERTEX_AI_USER)

        self._bootstrap(db)

        wiring = wiring.with_url("orchestrator", self._orchestrator_url(deployed))
        self.gateway = self._gateway(wiring, gateway_account, with_redis=db.redis is not None)
        # Behind the edge the page calls its API on its own origin (the URL map sends /v1/* to the gateway).
        self.frontend = self._frontend(wiring.with_url("gateway", env.edge.origin or self.gateway.uri))
        if db.redis:
            self._rate_limit_fallback_metric()
        primary = {"orchestrator": self.orchestrator, "gateway": self.gateway, "frontend": self.frontend}
        # The same three services, by the same names, in each further region: the edge's load balancer
        # has a serverless NEG per region and service, which names the service
        # (cloud.google.com/load-balancing/docs/negs/serverless-neg-concepts).
        self.regional = {
            region: self._region(region, wiring, project.number, primary, with_redis=db.redis is not None)
            for region in env.service_regions[1:]
        }
        self._grant_invokers(deployed, worker=db.worker_account)
        # The address to open: the gateway's CORS and the browser key admit this origin only.
        TerraformOutput(self, "chat_page_url", value=frontend_origin)

    def _region(
        self, region: str, wiring: Wiring, project_number: str, primary: dict[str, CloudRunService], *, with_redis: bool
    ) -> dict[str, CloudRunService]:
        """The orchestrator, the gateway and the frontend in ``region``, each run by its primary's
        account. Each gateway calls its own region's orchestrator: the call stays in the region
        (no cross-region latency or inter-region transfer), and a region the load balancer ejects
        takes its whole chain out with it rather than leave a healthy gateway calling a failing
        orchestrator. The orchestrators all share the one database and model servers."""
        names, env = self.env.names, self.env
        wiring = replace(
            wiring, orchestrator_audience=run_app_url(names.service["orchestrator"], project_number, region)
        )
        built: dict[str, CloudRunService] = {}
        for role in HAND_BUILT[::-1]:  # the orchestrator, the gateway, the frontend: each calls the one before
            source = primary[role]
            built[role] = self._service(
                role,
                getattr(env.services, role),
                env=container_env(env, wiring, role),
                account=source.service_account,
                secrets=self._gateway_secrets(with_redis=with_redis) if role == "gateway" else {},
                region=region,
                same_as=source,
            )
            # Behind the edge every region's page calls its API on the one domain.
            url = self.env.edge.origin if role == "gateway" and self.env.edge.origin else built[role].uri
            wiring = wiring.with_url(role, url)
        for role in ("gateway", "frontend"):
            self._admit_public(role, built[role])
        return built

    def _gateway(self, wiring: Wiring, account: ServiceAccount, *, with_redis: bool) -> CloudRunService:
        """The public API: it alone may call the orchestrator; with Redis, its auth secret."""
        gateway = self._service(
            "gateway",
            self.env.services.gateway,
            env=container_env(self.env, wiring, "gateway"),
            account=account,
            secrets=self._gateway_secrets(with_redis=with_redis),
        )
        self._admit_public("gateway", gateway)
        return gateway

    @cached_property
    def _beta(self) -> GoogleBetaProvider:
        """The beta provider, made once for every region's frontend behind Identity-Aware Proxy."""
        return GoogleBetaProvider(self, "google-beta", project=self.env.project_id, region=self.env.region)

    def _gateway_secrets(self, *, with_redis: bool) -> dict[str, str]:
        # Read at start-up from Secret Manager, granted to the gateway alone.
        return {"REDIS_AUTH": self.env.names.redis_auth_secret} if with_redis else {}

    def _admit_public(self, role: str, service: CloudRunService) -> None:
        """Who may invoke a public service: anyone, or, for a frontend behind Identity-Aware Proxy,
        the listed members through it."""
        settings = self.env.services
        if role == "frontend" and settings.frontend.access == "iap":
            # Behind the edge, IAP is the backend service's (stacks/edge.py); the service admits only IAP.
            service.require_iap(members=settings.iap_members, beta=self._beta, at_load_balancer=self.env.edge.enabled)
        else:
            service.grant_public_invoke()

    def _others(
        self, deployed: Topology, wiring: Wiring, db: DatabaseOutputs, project_number: str
    ) -> dict[str, CloudRunService]:
        """The topology's other Cloud Run services, each after those it calls: each is told the
        URL of another it calls, a hand-built one's by its deterministic URL (built later)."""
        names = self.env.names
        for name in HAND_BUILT:
            wiring = wiring.with_url(name, run_app_url(names.service[name], project_number, self.env.region))
        others: dict[str, CloudRunService] = {}
        for name in deployed.start_order():
            if name in HAND_BUILT or name not in deployed.run_services():
                continue
            others[name] = self._service(
                name,
                self.env.services.sizing(name),
                env=container_env(self.env, wiring, name) if name in deployed.built() else {},
                account=db.service_accounts.get(name),
            )
            if deployed.services[name].public:
                others[name].grant_public_invoke()
            wiring = wiring.with_url(name, others[name].uri)
        return others

    def _grant_invokers(self, deployed: Topology, *, worker: ServiceAccount | None) -> None:
        """Each Cloud Run service may be invoked by the Cloud Run services that call it (roles/run.invoker:
        cloud.google.com/run/docs/authenticating/service-to-service)."""
        built = {"orchestrator": self.orchestrator, "gateway": self.gateway, "frontend": self.frontend}
        models = {"inference": self.inference, "inference-spill": self.spill}
        run = {**built, **{name: server for name, server in models.items() if server}, **self.others}
        # The batch workers on GKE call as their own account (Workload Identity).
        callers = {name: s.service_account for name, s in run.items()} | ({"worker": worker} if worker else {})
        # Each region's copy of a service is invoked by the same callers (its copies share their accounts).
        copies = [*run.items(), *(item for regional in self.regional.values() for item in regional.items())]
        for name, service in copies:
            for caller in deployed.callers(name):
                if caller not in callers:
                    raise ValueError(f"{caller} -> {name}: {caller} has no identity this stack can grant run.invoker")
                service.grant_invoke(callers[caller])

    def _cloud_run_model_server(self, role: str) -> CloudRunService:
        """The [inference.cloud_run] model server on a Cloud Run GPU: the self-hosted one
        ("inference", placement = "cloud_run"), or the GKE pool's spill target ("inference-spill").
        Either runs the self-hosted server's image: the file's, else the registry's "inference"."""
        gpu = self.env.inference.cloud_run_server
        gpu = gpu.model_copy(update={"image": self._image("inference", gpu)})
        return self._service(
            role,
            gpu,
            env=dict(gpu.env),
            container_port=gpu.port,
            args=("--model", gpu.model, "--port", str(gpu.port)),
        )

    def _frontend(self, wiring: Wiring) -> CloudRunService:
        """The chat page: public, or behind Identity-Aware Proxy for the listed members."""
        frontend = self._service(
            "frontend", self.env.services.frontend, env=container_env(self.env, wiring, "frontend")
        )
        self._admit_public("frontend", frontend)
        return frontend

    def _orchestrator_url(self, deployed: Topology) -> str:
        """Where the gateway dials the orchestrator: its run.app URL, or in connector mode its
        internal load balancer's private address, which the connector carries into the VPC
        (docs/network-egress.md). The ID token's audience stays the run.app URL (Wiring)."""
        fronted = deployed.behind_internal_lb()
        if set(fronted) - {"orchestrator"}:
            # network.internal_lb_address is one address, for the one internal service called today.
            raise ValueError(
                f"connector mode fronts only the orchestrator with an internal load balancer, not {fronted}"
            )
        if not fronted:
            return self.orchestrator.uri
        lb = InternalLoadBalancer(
            self,
            "orchestrator-lb",
            InternalLoadBalancerProps(
                name=self.env.names.internal_lb,
                region=self.env.region,
                network=self.network.network_id,
                subnetwork=self.network.workloads_subnet_id,
                address=str(self.network.internal_lb_address),
                service=self.orchestrator.service.name,
            ),
        )
        return f"http://{lb.forwarding_rule.ip_address}"

    def egress(self, service: str, region: str | None = None) -> Egress:
        """How ``service`` sends private ranges into the VPC: through the connector, or by Direct VPC
        egress from the Cloud Run subnet of ``region`` (the environment's by default)."""
        net = self.network
        if net.connector_id:
            return ConnectorEgress(connector=net.connector_id)
        subnet = net.run_subnet_ids.get(region, net.run_subnet_id) if region else net.run_subnet_id
        assert subnet is not None, "direct mode has Cloud Run's subnet"
        return PrivateEgress(network=net.network_id, subnetwork=subnet, tag=self.env.names.run_tag[service])

    def _image(self, role: str, settings: CloudRunSizing) -> str:
        return service_image(self.env, role, settings.image)

    def _account(self, role: str) -> ServiceAccount:
        """The Cloud Run service ``role``'s own account."""
        return ServiceAccount(
            self,
            f"{role}-identity",
            ServiceAccountProps(
                account_id=self.env.names.service[role],
                display_name=f"{role} (Cloud Run)",
                description=f"Runs the {role} Cloud Run service.",
            ),
        )

    def _service(
        self,
        role: str,
        settings: CloudRunSizing,
        *,
        env: dict[str, str],
        account: ServiceAccount | None = None,
        secrets: dict[str, str] | None = None,
        container_port: int = 8080,
        args: tuple[str, ...] = (),
        region: str | None = None,
        same_as: CloudRunService | None = None,
    ) -> CloudRunService:
        """The Cloud Run service ``role``, run by ``account`` or by a new account of its own; ``secrets``
        are variables the stack itself has the service read from Secret Manager, beside the file's.
        In a further ``region``, its construct id ends in the region, so the environment's own
        region keeps the addresses it was first deployed at; ``same_as`` is the primary's."""
        names = self.env.names
        if self.env.edge.enabled and role in EDGE_SERVICES:
            # Only the load balancer (and the VPC) may reach it: its run.app URL is closed to the
            # internet (cloud.google.com/run/docs/securing/ingress#settings).
            settings = settings.model_copy(update={"ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"})
        props = CloudRunServiceProps(
            name=names.service[role],
            project=self.env.project_id,
            region=region or self.env.region,
            image=self._image(role, settings),
            deletion_protection=self.env.services.deletion_protection,
            egress=self.egress(role, region) if role in names.run_tag else None,
            settings=settings,
            env=tuple(env.items()),
            secrets=tuple((secrets or {}).items()),
            container_port=container_port,
            args=args,
            metrics_config_secret=names.metrics_config_secret[role] if role in EXPORTS_METRICS else None,
        )
        return CloudRunService(
            self,
            f"{role}-{region}" if region else role,
            props,
            service_account=account or self._account(role),
            same_as=same_as,
        )

    def _sign_in(self, frontend_origin: str) -> ApikeysKey:
        """Identity Platform, and the browser key the chat page at ``frontend_origin`` signs in with."""
        env = self.env
        # The chat page's users sign in with email and password (the gateway trusts these tokens).
        # Enabling Identity Platform cannot be undone: destroy only forgets it
        # (registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/identity_platform_config).
        IdentityPlatformConfig(
            self,
            "identity-platform",
            project=env.project_id,
            sign_in=IdentityPlatformConfigSignIn(
                email=IdentityPlatformConfigSignInEmail(enabled=True, password_required=True)
            ),
            # Behind the edge, the page signs in from its domain alone
            # (cloud.google.com/identity-platform/docs/reference/rest/v2/Config: authorizedDomains).
            authorized_domains=[env.edge.domain] if env.edge.enabled and env.edge.domain else None,
        )
        return ApikeysKey(
            self,
            "identity-platform-key",
            name=env.names.browser_key,
            display_name="Chat page sign-in (browser key, public by design)",
            restrictions=ApikeysKeyRestrictions(
                api_targets=[ApikeysKeyRestrictionsApiTargets(service=api) for api in IDENTITY_PLATFORM_APIS],
                browser_key_restrictions=ApikeysKeyRestrictionsBrowserKeyRestrictions(
                    allowed_referrers=[f"{frontend_origin}/*"]
                ),
            ),
        )

    def _bootstrap(self, db: DatabaseOutputs) -> None:
        """The job that grants the orchestrator's database user its schema, once."""
        names, settings = self.env.names, self.env.services
        DatabaseBootstrapJob(
            self,
            "database-bootstrap",
            DatabaseBootstrapProps(
                name=names.database_bootstrap,
                region=self.env.region,
                image=self._image("orchestrator", settings.orchestrator),
                egress=self.egress("db-bootstrap"),
                database_host=db.host,
                database_server_ca=db.server_ca,
                database_name=db.database_name,
                grantee=db.orchestrator_database_user,
                admin_password_secret=names.database_admin_secret,
                deletion_protection=settings.deletion_protection,
            ),
            account=ServiceAccount(
                self,
                "database-bootstrap-identity",
                ServiceAccountProps(
                    account_id=names.database_bootstrap,
                    display_name="Database bootstrap (Cloud Run job)",
                    description="Grants the orchestrator's IAM database user its schema, once; reads the admin password.",
                ),
            ),
        )

    def _rate_limit_fallback_metric(self) -> None:
        names = self.env.names
        # Counts the gateway's warnings while it limits per instance because Redis did not
        # answer (at most one a minute an instance): "the number of log entries that match a
        # filter" (cloud.google.com/logging/docs/logs-based-metrics#counter-metrics), to alert on.
        LoggingMetric(
            self,
            "rate-limit-fallback",
            name=names.rate_limit_fallback_metric,
            description="Gateway instances limiting per instance because Redis did not answer",
            filter=(
                'resource.type="cloud_run_revision" '
                f'AND resource.labels.service_name="{names.service["gateway"]}" '
                f'AND jsonPayload.message="{FALLBACK_MESSAGE}"'
            ),
            metric_descriptor=LoggingMetricMetricDescriptor(metric_kind="DELTA", value_type="INT64", unit="1"),
        )
