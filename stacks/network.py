"""Layer `network`: the private network every other layer lives in.

A custom-mode VPC with one regional subnet for GKE (with pod and service ranges),
a subnet of its own that the Cloud Run services send private traffic from (Direct
VPC egress) or, in connector mode, a Serverless VPC Access connector with its subnet and
the internal load balancer's proxy-only subnet and address (docs/network-egress.md), a private run.app zone so Cloud Run reaches internal services through
it, Private Services Access for Cloud SQL, Cloud NAT for private nodes, and a
firewall that denies by default and allows only the flows of the architecture
diagram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cdktf import TerraformOutput
from cdktf_cdktf_provider_google.compute_address import ComputeAddress
from cdktf_cdktf_provider_google.compute_global_address import ComputeGlobalAddress
from cdktf_cdktf_provider_google.compute_network import ComputeNetwork
from cdktf_cdktf_provider_google.compute_router import ComputeRouter
from cdktf_cdktf_provider_google.compute_router_nat import (
    ComputeRouterNat,
    ComputeRouterNatLogConfig,
    ComputeRouterNatSubnetwork,
)
from cdktf_cdktf_provider_google.compute_subnetwork import (
    ComputeSubnetwork,
    ComputeSubnetworkLogConfig,
    ComputeSubnetworkSecondaryIpRange,
)
from cdktf_cdktf_provider_google.dns_managed_zone import (
    DnsManagedZone,
    DnsManagedZonePrivateVisibilityConfig,
    DnsManagedZonePrivateVisibilityConfigNetworks,
)
from cdktf_cdktf_provider_google.dns_record_set import DnsRecordSet
from cdktf_cdktf_provider_google.project_service import ProjectService
from cdktf_cdktf_provider_google.service_networking_connection import ServiceNetworkingConnection
from cdktf_cdktf_provider_google.vpc_access_connector import VpcAccessConnector, VpcAccessConnectorSubnet
from constructs import Construct

from hybrid.components.firewall import DEFAULT_DENY_PRIORITY, Firewall, FirewallProps, Rule, flow_rules
from hybrid.config import Environment
from hybrid.config.budget import BudgetSettings
from hybrid.layer import LayerStack
from hybrid.network_constants import ANYWHERE, PRIVATE_GOOGLE_APIS_ADDRESSES
from hybrid.topology import DEFAULT_DENY, Peer, for_environment, port_number

# Every API the platform's layers call; enabled here, in the first layer deployed
# (scripts/check_apply_order.py maps each resource to the APIs it needs, with their sources).
PLATFORM_APIS = (
    "aiplatform.googleapis.com",
    "apikeys.googleapis.com",
    "artifactregistry.googleapis.com",
    # The clusters enforce the project's Binary Authorization policy, whose API must be enabled
    # before they are created (cloud.google.com/binary-authorization/docs/creating-cluster#before_you_begin).
    "binaryauthorization.googleapis.com",
    # Project-level IAM grants, and reading the project's number, go through Resource Manager
    # (cloud.google.com/iam/docs/write-policy-client-libraries#before-you-begin).
    "cloudresourcemanager.googleapis.com",
    # The images are built by Cloud Build between the first layers and the rest (make up, step 2),
    # and its API must be enabled first (cloud.google.com/build/docs/securing-builds/configure-user-specified-service-accounts#before_you_begin).
    "cloudbuild.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dns.googleapis.com",
    "iam.googleapis.com",
    # Workload Identity: Pods act as Google service accounts with short-lived credentials
    # (cloud.google.com/iam/docs/create-short-lived-credentials-direct#before-you-begin).
    "iamcredentials.googleapis.com",
    "iap.googleapis.com",
    "identitytoolkit.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
)
# The batch queue's, where [workers] is enabled; not on by default in a new project
# (cloud.google.com/service-usage/docs/enabled-service#default).
WORKERS_APIS = ("pubsub.googleapis.com",)
# Memorystore, where [redis] is enabled.
REDIS_APIS = ("redis.googleapis.com",)
# Serverless VPC Access, in connector mode (cloud.google.com/vpc/docs/configure-serverless-vpc-access#before_you_begin).
CONNECTOR_APIS = ("vpcaccess.googleapis.com",)
# The usage dataset's, where [analytics] is enabled (the sink's Logging API is a platform API).
ANALYTICS_APIS = ("bigquery.googleapis.com",)

# Subnet flow logs (checkov CKV_GCP_26): 5-second aggregation, half the flows sampled.
_FLOW_LOGS = ComputeSubnetworkLogConfig(
    aggregation_interval="INTERVAL_5_SEC", flow_sampling=0.5, metadata="INCLUDE_ALL_METADATA"
)


@dataclass(frozen=True)
class NetworkOutputs:
    """What the other layers use of the network (each a reference: reading one orders the reader after it)."""

    network_id: str
    workloads_subnet_id: str  # GKE's, with the pods and services ranges
    run_subnet_id: str | None  # Cloud Run's Direct VPC egress (direct mode)
    inference_address: str  # the model servers' internal load balancer
    # The VPC, read from the Private Services Access peering: Cloud SQL's network, after the peering.
    private_services_network: str
    workers_subnet_id: str | None = None  # the workers' GKE Standard nodes, when [workers] is enabled
    # Connector mode: the connector the Cloud Run services send private ranges through, and the
    # internal load balancer's reserved frontend address.
    connector_id: str | None = None
    internal_lb_address: str | None = None
    # Cloud Run's Direct VPC egress subnet in each further region of [edge] regions.
    run_subnet_ids: dict[str, str] = field(default_factory=dict)


class NetworkStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment) -> None:
        super().__init__(scope, env, "network")
        self.apis = {
            api: ProjectService(self, f"api-{api.split('.')[0]}", service=api, disable_on_destroy=False)
            for api in PLATFORM_APIS
            + (WORKERS_APIS if env.workers.enabled else ())
            + (REDIS_APIS if env.redis.enabled else ())
            + (CONNECTOR_APIS if env.network.egress == "connector" else ())
            + (ANALYTICS_APIS if env.analytics.enabled else ())
        }
        self.vpc = ComputeNetwork(
            self,
            "vpc",
            name=env.names.network,
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            depends_on=[self.apis["compute.googleapis.com"]],
        )
        self._subnets(env)
        self.connector = self._connector(env) if env.network.egress == "connector" else None
        self._private_services(env)
        self._run_app_zone(env)
        self._nat(env)
        self.firewall = Firewall(self, "firewall", FirewallProps(network=self.vpc.id, rules=tuple(firewall_rules(env))))
        if env.budget:
            self._budget(env, env.budget)

        TerraformOutput(self, "network_id", value=self.vpc.id)
        if self.run_subnet:
            TerraformOutput(self, "cloud_run_subnet_id", value=self.run_subnet.id)
        self.outputs = NetworkOutputs(
            network_id=self.vpc.id,
            workloads_subnet_id=self.subnet.id,
            run_subnet_id=self.run_subnet.id if self.run_subnet else None,
            inference_address=self.inference_address.address,
            private_services_network=self.psa_connection.network,
            workers_subnet_id=self.workers_subnet.id if self.workers_subnet else None,
            connector_id=self.connector.id if self.connector else None,
            internal_lb_address=self.internal_lb_address.address if self.connector else None,
            run_subnet_ids={region: subnet.id for region, subnet in self.region_run_subnets.items()},
        )

    def _subnet(
        self, id_: str, name: str, cidr: str, *secondary: tuple[str, str], region: str | None = None
    ) -> ComputeSubnetwork:
        """A subnet of ``region`` (the environment's by default) with Private Google Access and flow
        logs, and its secondary ranges (name, CIDR)."""
        return ComputeSubnetwork(
            self,
            id_,
            name=name,
            region=region or self.env.region,
            network=self.vpc.id,
            ip_cidr_range=cidr,
            private_ip_google_access=True,
            secondary_ip_range=[
                ComputeSubnetworkSecondaryIpRange(range_name=range_name, ip_cidr_range=range_cidr)
                for range_name, range_cidr in secondary
            ]
            or None,
            log_config=_FLOW_LOGS,
        )

    def _subnets(self, env: Environment) -> None:
        names, net = env.names, env.network
        self.subnet = self._subnet(
            "workloads-subnet",
            names.subnet,
            str(net.subnet_cidr),
            (names.pods_range, str(net.pods_cidr)),
            (names.services_range, str(net.services_cidr)),
        )
        # Reserved for the model servers' internal load balancer, so the orchestrator's
        # inference URL is known before the cluster exists.
        self.inference_address = ComputeAddress(
            self,
            "inference-address",
            name=names.inference_address,
            region=env.region,
            address_type="INTERNAL",
            purpose="GCE_ENDPOINT",
            subnetwork=self.subnet.id,
            address=str(net.inference_address),
        )
        # The Cloud Run services' own subnet (Direct VPC egress), with Private Google Access:
        # calls to internal-only services count as internal only when they come through the VPC
        # from a subnet with it (cloud.google.com/run/docs/securing/ingress#settings). Firewall
        # rules match Cloud Run by this whole range, since its addresses are ephemeral
        # (cloud.google.com/run/docs/configuring/vpc-direct-vpc#direct-vpc-ip-allocation).
        self.run_subnet = (
            self._subnet("cloud-run-subnet", names.run_subnet, str(net.run_cidr)) if net.run_cidr else None
        )
        # The same in each further region of the stateless tier: Direct VPC egress needs a subnet
        # in the service's region (cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations).
        self.region_run_subnets = {
            region: self._subnet(
                f"cloud-run-subnet-{region}",
                names.region_run_subnet(region),
                str(net.region_run_cidrs[region]),
                region=region,
            )
            for region in env.service_regions[1:]
        }
        # The background workers' own subnet and secondary ranges, apart from the models' cluster so
        # each cluster's ranges and firewall rules are its own. No Cloud NAT serves it: its nodes
        # have no external address, so Private Google Access is their only way out, to Google APIs
        # (cloud.google.com/vpc/docs/private-google-access).
        self.workers_subnet = (
            self._subnet(
                "workers-subnet",
                names.workers_subnet,
                str(net.workers_cidr),
                (names.workers_pods_range, str(net.workers_pods_cidr)),
                (names.workers_services_range, str(net.workers_services_cidr)),
            )
            if env.workers.enabled
            else None
        )

    def _connector(self, env: Environment) -> VpcAccessConnector:
        """Connector mode: the connector in a /28 subnet of its own, with Private Google Access like
        every subnet here, and the internal load balancer's proxy-only subnet and frontend address
        (the services layer builds the load balancer itself)."""
        names, net = env.names, env.network
        subnet = self._subnet("connector-subnet", names.connector_subnet, str(net.connector_cidr))
        # Only Envoy-based regional load balancers use it; flow logs are not supported on it
        # (registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/compute_subnetwork#enable_flow_logs).
        self.proxy_only_subnet = ComputeSubnetwork(
            self,
            "proxy-only-subnet",
            name=names.proxy_only_subnet,
            region=env.region,
            network=self.vpc.id,
            ip_cidr_range=str(net.proxy_only_cidr),
            purpose="REGIONAL_MANAGED_PROXY",
            role="ACTIVE",
        )
        self.internal_lb_address = ComputeAddress(
            self,
            "internal-lb-address",
            name=names.internal_lb,
            region=env.region,
            address_type="INTERNAL",
            purpose="SHARED_LOADBALANCER_VIP",
            subnetwork=self.subnet.id,
            address=str(net.internal_lb_address),
        )
        # A connector in an existing subnet names it, not a range
        # (cloud.google.com/vpc/docs/configure-serverless-vpc-access#create-connector); its
        # instances scale between the bounds and never back down
        # (cloud.google.com/run/docs/configuring/vpc-connectors).
        return VpcAccessConnector(
            self,
            "connector",
            name=names.connector,
            region=env.region,
            subnet=VpcAccessConnectorSubnet(name=subnet.name),
            min_instances=net.connector_min_instances,
            max_instances=net.connector_max_instances,
            depends_on=[self.apis["vpcaccess.googleapis.com"]],
        )

    def _private_services(self, env: Environment) -> None:
        psa = env.network.psa_cidr
        self.psa_range = ComputeGlobalAddress(
            self,
            "psa-range",
            name=env.names.psa_range,
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            address=str(psa.network_address),
            prefix_length=psa.prefixlen,
            network=self.vpc.id,
        )
        self.psa_connection = ServiceNetworkingConnection(
            self,
            "psa-connection",
            network=self.vpc.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[self.psa_range.name],
            # Deleting the peering fails while a managed service instance still uses it (the Service
            # Networking API's DeleteConnectionRequest), and Cloud SQL's resources outlive a deleted
            # instance by up to a week (cloud.google.com/sql/docs/postgres/delete-instance): on
            # destroy, Terraform forgets the peering
            # (registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/
            # service_networking_connection#deletion_policy). The peering then blocks the VPC's
            # deletion until someone deletes it (docs/deploying.md, "Destroying").
            deletion_policy="ABANDON",
            # A peering so left behind makes the next deploy's create fail ("Cannot modify allocated
            # ranges in CreateConnection"); this updates the existing connection instead
            # (same page, #update_on_creation_fail; github.com/GoogleCloudPlatform/magic-modules/pull/11364).
            update_on_creation_fail=True,
            depends_on=[self.apis["servicenetworking.googleapis.com"]],
        )

    def _run_app_zone(self, env: Environment) -> None:
        # Cloud Run counts a call from another service as internal only if it comes through
        # the VPC: resolve run.app to private.googleapis.com inside it, so the gateway's calls
        # to the orchestrator enter the VPC by Direct VPC egress, which sends private.googleapis.com
        # into the VPC with egress PRIVATE_RANGES_ONLY (cloud.google.com/run/docs/securing/private-networking#from-other-services).
        self.run_app_zone = DnsManagedZone(
            self,
            "run-app-zone",
            name=env.names.run_app_zone,
            dns_name="run.app.",
            description="Cloud Run URLs resolve to private.googleapis.com inside the VPC.",
            visibility="private",
            private_visibility_config=DnsManagedZonePrivateVisibilityConfig(
                networks=[DnsManagedZonePrivateVisibilityConfigNetworks(network_url=self.vpc.id)]
            ),
            depends_on=[self.apis["dns.googleapis.com"]],
        )
        for record in ("run.app.", "*.run.app."):
            DnsRecordSet(
                self,
                f"run-app-{'wildcard' if record.startswith('*') else 'apex'}",
                managed_zone=self.run_app_zone.name,
                name=record,
                type="A",
                ttl=300,
                rrdatas=list(PRIVATE_GOOGLE_APIS_ADDRESSES),
            )

    def _nat(self, env: Environment) -> None:
        self.router = ComputeRouter(self, "router", name=env.names.router, region=env.region, network=self.vpc.id)
        # Private GKE nodes reach the internet (Hugging Face's model weights) only through NAT; their
        # images come from Artifact Registry, Docker Hub's through the registry layer's mirror. Cloud Run
        # needs none, as it sends only private ranges into the VPC.
        ComputeRouterNat(
            self,
            "nat",
            name=env.names.nat,
            router=self.router.name,
            region=env.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetwork=[ComputeRouterNatSubnetwork(name=self.subnet.id, source_ip_ranges_to_nat=["ALL_IP_RANGES"])],
            log_config=ComputeRouterNatLogConfig(enable=True, filter="ERRORS_ONLY"),
        )

    def _budget(self, env: Environment, budget: BudgetSettings) -> None:
        """Optional ([budget] in the environment file): alerts before the month's bill surprises anyone."""
        from hybrid.components.budget import Budget, BudgetProps

        Budget(
            self,
            "budget",
            BudgetProps(env_name=env.name, project_id=env.project_id, settings=budget),
        )


# What each default-deny rule stops, for its description.
_DENIED: dict[Literal["INGRESS", "EGRESS"], str] = {"INGRESS": "enters", "EGRESS": "leaves"}


def firewall_rules(env: Environment) -> list[Rule]:
    """Default deny both ways, then exactly the flows of the environment's topology (hybrid/topology.py)."""
    names, net = env.names, env.network
    deny = [
        Rule(
            name=names.firewall_rule[DEFAULT_DENY[direction]],
            description=f"Default deny: nothing {moves} unless a rule below allows it.",
            direction=direction,
            action="deny",
            source_ranges=(ANYWHERE,) if direction == "INGRESS" else (),
            destination_ranges=(ANYWHERE,) if direction == "EGRESS" else (),
            priority=DEFAULT_DENY_PRIORITY,
        )
        for direction, moves in _DENIED.items()
    ]

    def resolve(ref: str) -> tuple[str, ...]:
        if "/" in ref:
            return (ref,)
        # Cloud Run's calls come from the connector, or from its subnet in every region it runs in.
        if ref == "cloud_run_cidr":
            return tuple(map(str, net.cloud_run_cidrs(env.service_regions)))
        return (str(getattr(net, ref)),)

    def ranges(peer: Peer) -> tuple[str, ...]:
        return tuple(cidr for ref in peer.ranges for cidr in resolve(ref))

    def tag(service: str) -> str:
        # A connector's instances carry its own tag, shared by every service that uses it
        # (cloud.google.com/vpc/docs/serverless-vpc-access#restrict-access); Direct VPC egress, the service's.
        return connector_tag(env) if net.egress == "connector" else names.run_tag[service]

    active = for_environment(env)
    order = active.section_order()
    allowed: dict[str, tuple[tuple[int, bool], Rule]] = {}
    for flow in active.firewall_flows():
        port = port_number(flow.port, env) if flow.port else None
        rules = flow_rules(flow, name=names.firewall_rule.__getitem__, ranges=ranges, tag=tag, port=port)
        for rule in rules:
            # Cloud Run's calls to one destination share its ingress rule, which matches their subnet.
            allowed.setdefault(rule.name, ((order.index(flow.section), rule.direction == "EGRESS"), rule))
    # Each section's ingress rules, then its egress rules: the order the rules were written in,
    # which the HCL snapshots keep.
    return deny + [rule for _, rule in sorted(allowed.values(), key=lambda placed: placed[0])]


def connector_tag(env: Environment) -> str:
    """The network tag of the connector's instances: vpc-connector-REGION-NAME
    (cloud.google.com/vpc/docs/serverless-vpc-access#restrict-access)."""
    return f"vpc-connector-{env.region}-{env.names.connector}"
