"""Cloud Run services: identity, invokers, and how their traffic enters the VPC."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from analysis.reachability.core import (
    ANYWHERE,
    CONNECTOR_PRIVATE_RANGES,
    DIRECT_VPC_PRIVATE_RANGES,
    PRIVATE_GOOGLE_ACCESS_VIPS,
    Chain,
    Json,
    Net,
    env_json,
    host,
    net,
    within,
)
from analysis.reachability.dns import private_dns
from analysis.reachability.googleapis import api_addresses, from_subnet
from analysis.reachability.iam import project_holders, resource_holders
from analysis.reachability.synth import Ref, Synth

SERVICE = "google_cloud_run_v2_service"
JOB = "google_cloud_run_v2_job"


@dataclass(frozen=True)
class RunService:
    """A Cloud Run service, or a job (``kind`` JOB), in the services stack."""

    key: str
    config: Json
    kind: str = SERVICE

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.key))

    @property
    def ingress(self) -> str:
        return str(self.config.get("ingress", "INGRESS_TRAFFIC_ALL"))  # the API's default

    @property
    def template(self) -> Json:
        """The revision's template; a job nests its task's template one level down
        (cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs#ExecutionTemplate)."""
        template: Json = self.config.get("template") or {}
        return (template.get("template") or {}) if self.kind == JOB else template

    @property
    def containers(self) -> list[Json]:
        return list(self.template.get("containers") or ())

    @property
    def env(self) -> dict[str, Any]:
        variables = self.containers[0].get("env") or () if self.containers else ()
        return {e["name"]: e.get("value") for e in variables if "name" in e}

    def json(self, c: Chain, name: str) -> Any:
        return env_json(c, self.name, self.env, name)

    def secret_env(self) -> dict[str, str]:
        """Variables read from Secret Manager: name -> secret."""
        variables = self.containers[0].get("env") or () if self.containers else ()
        return {
            e["name"]: str(secret)
            for e in variables
            if (secret := ((e.get("value_source") or {}).get("secret_key_ref") or {}).get("secret"))
        }


def run_service(s: Synth, role: str, kind: str = SERVICE, region: str | None = None) -> RunService | None:
    """The service ``role`` in ``region``, by default the environment's: the region of the services
    stack's provider. Further regions ([edge] regions) run it under the same name."""
    if region is None:
        providers = s.stack(s.stack_id("services")).get("provider", {}).get("google") or [{}]
        region = providers[0].get("region")
    for key, config in s.resources("services", kind).items():
        if config.get("name") == f"{s.env}-{role}" and config.get("location", region) == region:
            return RunService(key, config, kind)
    return None


def service_target(s: Synth, service: RunService) -> tuple[str, str, str]:
    return (s.stack_id("services"), service.kind, service.key)


def identity(s: Synth, service: RunService) -> str:
    """The service's runtime service account, as a principal."""
    return s.principal(s.stack_id("services"), service.template.get("service_account", "default compute account"))


def invokers(s: Synth, service: RunService) -> set[str]:
    """Principals holding roles/run.invoker on the service, or on the project."""
    target, role = service_target(s, service), "roles/run.invoker"
    found = resource_holders(s, "google_cloud_run_v2_service_iam_member", "name", target, {role})
    for stack_id, _, grant in s.all_resources("google_cloud_run_v2_service_iam_binding"):
        if grant.get("role") == role and s.refers_to(stack_id, grant.get("name"), target):
            found |= {s.principal(stack_id, m) for m in grant.get("members") or ()}
    return found | project_holders(s, role)


# ------------------------------------------------------------------------------------------
# Where a Cloud Run service's traffic enters the VPC


@dataclass(frozen=True)
class Attachment:
    """A service's way into the VPC: Direct VPC egress from a subnet, or a connector."""

    kind: str  # "Direct VPC egress" or "connector <name>"
    network: Ref
    subnet_name: str
    subnet: Json
    source: Net
    tags: frozenset[str]
    egress: str  # ALL_TRAFFIC or PRIVATE_RANGES_ONLY
    connector: bool

    @property
    def private_ranges(self) -> tuple[Net, ...]:
        return CONNECTOR_PRIVATE_RANGES if self.connector else DIRECT_VPC_PRIVATE_RANGES

    def routes_into_vpc(self, destination: Net) -> bool:
        return self.egress == "ALL_TRAFFIC" or within(destination, self.private_ranges)

    def describe_routing(self, destination: Net) -> str:
        if self.egress == "ALL_TRAFFIC":
            return f"egress ALL_TRAFFIC sends {destination} into the VPC through {self.kind}"
        if self.connector:
            ranges = "RFC 1918 and 100.64.0.0/10"
        else:
            ranges = "RFC 1918, 100.64.0.0/10 and the Private Google Access VIPs"
        verb = "sends" if self.routes_into_vpc(destination) else "does not send"
        return f"egress PRIVATE_RANGES_ONLY with {self.kind} carries {ranges}: it {verb} {destination} into the VPC"


def attachment(s: Synth, c: Chain, service: RunService) -> Attachment | None:
    services_id, vpc = s.stack_id("services"), service.template.get("vpc_access")
    if not vpc:
        c.fail(f"{service.name} has no vpc_access: all its traffic leaves Cloud Run directly, outside any VPC")
        return None
    # Egress defaults to PRIVATE_RANGES_ONLY (cloud.google.com/run/docs/reference/rest/v2/VpcAccess).
    egress = vpc.get("egress") or "PRIVATE_RANGES_ONLY"
    if vpc.get("connector"):
        connector_ref = s.ref(services_id, vpc["connector"])
        if connector_ref is None:
            c.fail(f"{service.name}'s connector {vpc['connector']!r} is not a resource of the synthesized stacks")
            return None
        connector = s.config(connector_ref)
        subnet_ref = s.ref(connector_ref.stack, (connector.get("subnet") or {}).get("name"))
        if subnet_ref is None:
            c.fail(f"connector {connector.get('name')} has no subnet of its own to check Private Google Access on")
            return None
        subnet = s.config(subnet_ref)
        # Connector VMs carry the tags vpc-connector and vpc-connector-REGION-NAME
        # (cloud.google.com/vpc/docs/serverless-vpc-access#restrict-access).
        tags = frozenset({"vpc-connector", f"vpc-connector-{connector.get('region')}-{connector.get('name')}"})
        kind, is_connector = f"connector {connector.get('name')}", True
        network_ref = s.ref(subnet_ref.stack, subnet.get("network"))
    else:
        interfaces = vpc.get("network_interfaces") or []
        if not interfaces:
            c.fail(f"{service.name}'s vpc_access has neither a connector nor network_interfaces")
            return None
        interface = interfaces[0]
        subnet_ref = s.ref(services_id, interface.get("subnetwork"))
        if subnet_ref is None:
            c.fail(f"{service.name}'s Direct VPC egress subnetwork {interface.get('subnetwork')!r} is not resolvable")
            return None
        subnet = s.config(subnet_ref)
        # The interface's network tags apply to the service's traffic in the VPC
        # (NetworkInterface.tags, cloud.google.com/run/docs/reference/rest/v2/VpcAccess#networkinterface).
        tags = frozenset(interface.get("tags") or ())
        kind, is_connector = "Direct VPC egress", False
        network_ref = s.ref(services_id, interface.get("network")) or s.ref(subnet_ref.stack, subnet.get("network"))
    if network_ref is None:
        c.fail(f"cannot tell which VPC {service.name} is attached to")
        return None
    return Attachment(
        kind=kind,
        network=network_ref,
        subnet_name=subnet.get("name", subnet_ref.name),
        subnet=subnet,
        source=net(subnet["ip_cidr_range"]),
        tags=tags,
        egress=egress,
        connector=is_connector,
    )


def reach_internal_service(s: Synth, c: Chain, caller: RunService, callee: RunService) -> None:
    """``caller`` calls ``callee``'s run.app URL with its own identity: ingress, path, IAM."""
    # cloud.google.com/run/docs/securing/ingress#settings: "Internal" admits requests from the
    # VPC; a request from another Cloud Run service counts as internal only if it goes to a VPC
    # network (Direct VPC egress or a connector) whose subnet has Private Google Access.
    if callee.ingress == "INGRESS_TRAFFIC_ALL":
        c.ok(f"{callee.name}: ingress INGRESS_TRAFFIC_ALL admits the call from anywhere")
    else:
        c.ok(f"{callee.name}: ingress {callee.ingress} admits only requests that come through a VPC network")
        path_into_vpc(s, c, caller, callee)
    may_invoke(s, c, caller, callee)


def may_invoke(s: Synth, c: Chain, caller: RunService, callee: RunService) -> None:
    # cloud.google.com/run/docs/authenticating/service-to-service: the caller's identity needs
    # roles/run.invoker on the receiving service.
    who, allowed = identity(s, caller), invokers(s, callee)
    c.check(
        who in allowed or "allUsers" in allowed,
        f"roles/run.invoker on {callee.name}: {', '.join(sorted(allowed)) or 'nobody'}; the caller runs as {who}",
    )


def path_into_vpc(s: Synth, c: Chain, caller: RunService, callee: RunService) -> None:
    attached = attachment(s, c, caller)
    if attached is None:
        return
    location = callee.config.get("location", "REGION")
    hostname = f"{callee.name}-PROJECT_NUMBER.{location}.run.app."  # the deterministic URL's host
    dns = private_dns(s, attached.network, hostname)
    answer = f" (zone {dns[0]}: {', '.join(dns[1])})" if dns and dns[1] else ": run.app resolves to public addresses"
    if not c.check(
        bool(dns and dns[1]), f"a private DNS zone of {s.name_of(attached.network)} answers {hostname}{answer}"
    ):
        return
    assert dns is not None
    addresses = [host(a) for a in dns[1]]
    if not c.check(
        all(within(a, PRIVATE_GOOGLE_ACCESS_VIPS) for a in addresses),
        f"run.app resolves inside the Private Google Access VIPs {', '.join(map(str, PRIVATE_GOOGLE_ACCESS_VIPS))}",
    ):
        return
    vip = next(v for v in PRIVATE_GOOGLE_ACCESS_VIPS if within(addresses[0], [v]))
    if not c.check(attached.routes_into_vpc(vip), f"{caller.name}: {attached.describe_routing(vip)}"):
        c.fail(f"the call leaves {caller.name} as external traffic, which {callee.name}'s internal ingress refuses")
        return
    # The VIPs are reachable only from subnets with Private Google Access.
    destinations = list(ipaddress.collapse_addresses(addresses))
    from_subnet(s, c, attached.network, attached.subnet, [attached.source], destinations, attached.tags)


def google_api_path(s: Synth, c: Chain, service: RunService, hostname: str) -> None:
    """``service`` calls the Google API at ``hostname``: directly from Cloud Run, or through the VPC."""
    vpc = service.template.get("vpc_access")
    attached = attachment(s, c, service) if vpc else None
    if vpc and attached is None:
        return
    destinations, what = api_addresses(s, attached.network, hostname) if attached else ([ANYWHERE], "")
    # Google APIs answer on public addresses unless a private zone maps them to the VIPs;
    # PRIVATE_RANGES_ONLY sends public addresses straight out of Cloud Run, ALL_TRAFFIC into the
    # VPC (cloud.google.com/run/docs/configuring/networking-best-practices).
    if attached is None or not all(attached.routes_into_vpc(d) for d in destinations):
        c.ok(
            f"{hostname} ({what or 'public Google addresses'}) is reached directly from Cloud Run, outside the VPC"
            + (f" (egress {attached.egress})" if attached else "")
        )
        return
    c.ok(f"{service.name}: {attached.describe_routing(destinations[0])}")
    from_subnet(s, c, attached.network, attached.subnet, [attached.source], destinations, attached.tags)
