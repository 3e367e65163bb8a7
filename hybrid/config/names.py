"""Every GCP resource name an environment's stacks build, and the rule GCP holds each to."""

from __future__ import annotations

from hybrid import topology

_RFC1035 = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
# The edge's named parts (hybrid/components/load_balancer.py, stacks/edge.py).
EDGE_PARTS = (
    "ip",
    "https-rule",
    "http-rule",
    "frontend",
    "gateway",
    "frontend-neg",
    "gateway-neg",
    "url-map",
    "http-redirect",
    "https-proxy",
    "http-proxy",
    "cert",
    "armor",
)
_SERVICE_ACCOUNT = (r"[a-z][-a-z0-9]{4,28}[a-z0-9]", "6-30 characters")
# A GKE cluster's or node pool's name, a Memorystore instance's id: at most 40 characters (cited where used).
_UP_TO_40 = (r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", "at most 40 characters")
# cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create: secretId.
_SECRET_ID = (r"[A-Za-z0-9_-]{1,255}", "1-255 letters, digits, '-' or '_'")
# cloud.google.com/storage/docs/buckets#naming: 3-63 characters (no dots), globally unique.
_BUCKET = (
    r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]",
    "3-63 lowercase letters, digits, '-' or '_' (a shorter project id or environment name)",
)
# cloud.google.com/logging/docs/reference/v2/rest/v2/projects.metrics: a metric's name, at most 100 characters.
_METRIC = (r"[A-Za-z0-9_.-]{1,100}", "at most 100 letters, digits, '_', '.' or '-'")


class ResourceNames:
    """GCP resource names derived from the environment name, and the rules GCP holds them to."""

    def __init__(self, env: str, project: str) -> None:
        self.network = f"{env}-vpc"
        self.subnet = f"{env}-workloads"
        # The workloads subnet's secondary ranges, which GKE puts pods and services on.
        self.pods_range, self.services_range = "pods", "services"
        self.run_subnet = f"{env}-cloud-run"
        # Connector mode (docs/network-egress.md): the connector, its subnet, and the internal load
        # balancer in front of the internal Cloud Run services, with its proxies' subnet.
        self.connector = f"{env}-connector"
        self.connector_subnet = f"{env}-connector"
        self.proxy_only_subnet = f"{env}-lb-proxies"
        self.internal_lb = f"{env}-internal-lb"
        declared = topology.declared()
        # A network tag per Cloud Run workload that calls through the VPC, for egress firewall
        # rules: only the orchestrator may send to the model servers, only it and the bootstrap
        # job to Cloud SQL.
        self.run_tag = {service: f"{env}-run-{service}" for service in declared.vpc_callers()}
        self.psa_range = f"{env}-psa"
        # Each named for the flow it allows or denies (hybrid/topology.py); the workers tier's
        # apart, as they are made (and their names checked) only where [workers] is enabled.
        rule_sections = declared.rule_keys()
        self.firewall_rule = {rule: f"{env}-{rule}" for rule in rule_sections}
        self._workers_rule_keys = tuple(rule for rule, section in rule_sections.items() if section == "workers")
        self.router = f"{env}-router"
        self.nat = f"{env}-nat"
        self.sql_instance = f"{env}-postgres"
        self.cluster = f"{env}-models"
        self.inference_address = f"{env}-inference-lb"
        self.node_account = f"{env}-gke-nodes"
        self.model_server_account = f"{env}-vllm"
        self.metrics_adapter_account = f"{env}-metrics-adapter"
        self.run_app_zone = f"{env}-run-app"
        self.registry = f"{env}-services"
        # The Artifact Registry remote repository that mirrors Docker Hub (vLLM's image).
        self.dockerhub_mirror = f"{env}-dockerhub"
        # The chat page's browser key for Identity Platform sign-in.
        self.browser_key = f"{env}-chat-page"
        self.database_bootstrap = f"{env}-db-bootstrap"
        # The built-in admin's password, set and stored by the operator once (docs/deploying.md).
        self.database_admin_secret = f"{env}-postgres-admin-password"
        # [redis]: the gateway's rate-limit store, and its AUTH string as the gateway reads it.
        self.redis_instance = f"{env}-ratelimit"
        self.redis_auth_secret = f"{env}-redis-auth"
        self.rate_limit_fallback_metric = f"{env}-gateway-rate-limit-fallback"
        # The edge ([edge]): its load balancer's parts and its Cloud Armor policy. A NEG is regional,
        # so each region's keeps the one name.
        self.edge = {part: f"{env}-edge-{part}" for part in EDGE_PARTS}
        self.service = {service: f"{env}-{service}" for service in declared.cloud_run_services()}
        self.orchestrator_account = self.service["orchestrator"]
        # Each service's metrics sidecar's RunMonitoring document (hybrid/components/metrics_sidecar.py).
        self.metrics_config_secret = {service: f"{name}-rungmp" for service, name in self.service.items()}
        # The workers tier ([workers]): its subnet and secondary ranges, cluster, pools, identities,
        # the batch files' bucket (global: the project keeps it unique) and the queue.
        self.workers_subnet = f"{env}-workers"
        self.workers_pods_range, self.workers_services_range = "workers-pods", "workers-services"
        self.workers_cluster = f"{env}-workers"
        self.spot_pool, self.on_demand_pool = "spot", "on-demand"
        self.workers_node_account = f"{env}-workers-nodes"
        self.worker_account = f"{env}-worker"
        self.workers_metrics_adapter_account = f"{env}-workers-metrics"
        self.batch_bucket = f"{project}-{env}-batch"
        self.batch_topic = f"{env}-batch-lines"
        self.batch_subscription = f"{env}-batch-workers"
        self.dead_letter_topic = self.dead_letter_subscription = f"{env}-batch-dead-letters"
        # The analytics layer's usage log sink (on by default), checked with the base names.
        self.usage_sink = f"{env}-usage-to-bigquery"

    def region_run_subnet(self, region: str) -> str:
        """Cloud Run's Direct VPC egress subnet in a further region of the stateless tier."""
        return f"{self.run_subnet}-{region}"

    def sql_replica(self, region: str) -> str:
        """The Cloud SQL instance's cross-region read replica in ``region``."""
        return f"{self.sql_instance}-{region}"

    def rules(
        self,
        *,
        workers: bool = True,
        connector: bool = True,
        regions: tuple[str, ...] = (),
        replica_region: str | None = None,
    ) -> dict[str, tuple[str, str, str]]:
        """Each name's (value, pattern, rule); the workers tier's only with ``workers``, connector
        mode's only with ``connector``, a Cloud Run subnet for each further region of ``regions``
        and the replica's in ``replica_region``."""
        rfc = "1-63 lowercase letters, digits and hyphens, starting with a letter"
        rules = {**self._base_rules(rfc), **(self._workers_rules(rfc) if workers else {}), **self._edge_rules(rfc)}
        regional = {f"Cloud Run subnet in {r}": (self.region_run_subnet(r), _RFC1035, rfc) for r in regions}
        if replica_region:
            regional["Cloud SQL replica"] = (self.sql_replica(replica_region), _RFC1035, rfc)
        return {**rules, **(self._connector_rules(rfc) if connector else {}), **regional}

    def _connector_rules(self, rfc: str) -> dict[str, tuple[str, str, str]]:
        return {
            # A connector's name: a letter first, at most 25 characters
            # (cloud.google.com/vpc/docs/configure-serverless-vpc-access#create-connector).
            "connector": (
                self.connector,
                r"[a-z][-a-z0-9]{0,23}[a-z0-9]",
                "2-25 lowercase letters, digits and hyphens, starting with a letter",
            ),
            "connector subnet": (self.connector_subnet, _RFC1035, rfc),
            "proxy-only subnet": (self.proxy_only_subnet, _RFC1035, rfc),
            "internal load balancer": (self.internal_lb, _RFC1035, rfc),
        }

    def _edge_rules(self, rfc: str) -> dict[str, tuple[str, str, str]]:
        # cloud.google.com/compute/docs/naming-resources: Compute Engine names are RFC 1035, 1-63 characters.
        return {f"edge {part}": (name, _RFC1035, rfc) for part, name in self.edge.items()}

    def _workers_rules(self, rfc: str) -> dict[str, tuple[str, str, str]]:
        # cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics (and .subscriptions): a
        # letter first, then letters, digits and - _ . ~ + %, 3-255 characters, not starting with "goog".
        pubsub = (
            r"(?!goog)[A-Za-z][-A-Za-z0-9_.~+%]{2,254}",
            "3-255 letters, digits or -_.~+%, starting with a letter, not with goog",
        )
        return {
            "workers subnet": (self.workers_subnet, _RFC1035, rfc),
            "workers pods secondary range": (self.workers_pods_range, _RFC1035, rfc),
            "workers services secondary range": (self.workers_services_range, _RFC1035, rfc),
            # cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters: 40 chars.
            "workers GKE cluster": (self.workers_cluster, *_UP_TO_40),
            # cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters.nodePools:
            # like a cluster's name, at most 40 characters.
            **{
                f"{pool} node pool": (name, *_UP_TO_40)
                for pool, name in (("Spot", self.spot_pool), ("on-demand", self.on_demand_pool))
            },
            # cloud.google.com/iam/docs/service-accounts-create: 6-30 characters.
            **{
                f"{what} service account": (name, *_SERVICE_ACCOUNT)
                for what, name in (
                    ("workers node", self.workers_node_account),
                    ("worker", self.worker_account),
                    ("workers metrics adapter", self.workers_metrics_adapter_account),
                )
            },
            "batch bucket": (self.batch_bucket, *_BUCKET),
            "batch lines topic": (self.batch_topic, *pubsub),
            "batch workers subscription": (self.batch_subscription, *pubsub),
            "batch dead-letter topic and subscription": (self.dead_letter_topic, *pubsub),
            **{f"{rule} firewall rule": (self.firewall_rule[rule], _RFC1035, rfc) for rule in self._workers_rule_keys},
        }

    def _base_rules(self, rfc: str) -> dict[str, tuple[str, str, str]]:
        return {
            "VPC network": (self.network, _RFC1035, rfc),
            "subnet": (self.subnet, _RFC1035, rfc),
            "Cloud Run subnet": (self.run_subnet, _RFC1035, rfc),
            **{f"{service} network tag": (tag, _RFC1035, rfc) for service, tag in self.run_tag.items()},
            "Cloud Router": (self.router, _RFC1035, rfc),
            "Cloud NAT": (self.nat, _RFC1035, rfc),
            "Cloud SQL instance": (self.sql_instance, _RFC1035, rfc),
            "Cloud DNS zone": (self.run_app_zone, _RFC1035, rfc),
            # cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters: 40 chars.
            "GKE cluster": (self.cluster, *_UP_TO_40),
            "internal address": (self.inference_address, _RFC1035, rfc),
            "Private Services Access range": (self.psa_range, _RFC1035, rfc),
            **{
                f"{what} service account": (name, *_SERVICE_ACCOUNT)
                for what, name in (
                    ("GKE node", self.node_account),
                    ("model server", self.model_server_account),
                    ("metrics adapter", self.metrics_adapter_account),
                )
            },
            "Artifact Registry repository": (self.registry, _RFC1035, rfc),
            "Docker Hub mirror repository": (self.dockerhub_mirror, _RFC1035, rfc),
            "database bootstrap job and service account": (self.database_bootstrap, *_SERVICE_ACCOUNT),
            **self._service_rules(),
            **self._secondary_range_and_secret_rules(rfc),
        }

    def _service_rules(self) -> dict[str, tuple[str, str, str]]:
        return {
            # cloud.google.com/run/docs/deploying#service: at most 49 characters.
            **{
                f"Cloud Run service {service}": (name, r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?", "at most 49 characters")
                for service, name in self.service.items()
            },
            # cloud.google.com/iam/docs/service-accounts-create: 6-30 characters.
            **{f"{service} service account": (name, *_SERVICE_ACCOUNT) for service, name in self.service.items()},
        }

    def _secondary_range_and_secret_rules(self, rfc: str) -> dict[str, tuple[str, str, str]]:
        return {
            # cloud.google.com/compute/docs/reference/rest/v1/subnetworks: a secondary range's
            # rangeName, like a firewall rule's name (.../v1/firewalls), is RFC 1035, 1-63 characters.
            "pods secondary range": (self.pods_range, _RFC1035, rfc),
            "services secondary range": (self.services_range, _RFC1035, rfc),
            **{
                f"{rule} firewall rule": (name, _RFC1035, rfc)
                for rule, name in self.firewall_rule.items()
                if rule not in self._workers_rule_keys
            },
            # cloud.google.com/api-keys/docs/reference/rest/v2/projects.locations.keys/create: keyId.
            "browser API key": (self.browser_key, _RFC1035, rfc),
            "database admin password secret": (self.database_admin_secret, *_SECRET_ID),
            "rate-limit fallback metric": (self.rate_limit_fallback_metric, *_METRIC),
            # cloud.google.com/logging/docs/reference/v2/rest/v2/projects.sinks: a sink's name, at
            # most 100 letters, digits, '_', '-' or '.'.
            "usage log sink": (
                self.usage_sink,
                r"[A-Za-z0-9_.-]{1,100}",
                "at most 100 letters, digits, '_', '.' or '-'",
            ),
            "Redis AUTH string secret": (self.redis_auth_secret, *_SECRET_ID),
            **{
                f"{service} metrics sidecar secret": (name, *_SECRET_ID)
                for service, name in self.metrics_config_secret.items()
            },
            # cloud.google.com/memorystore/docs/redis/reference/rest/v1/projects.locations.instances/create:
            # instanceId, 1-40 lowercase letters, digits or hyphens, starting with a letter.
            "Memorystore instance": (self.redis_instance, *_UP_TO_40),
        }
