"""Can traffic flow along each edge of the architecture? Read from the synthesized stacks.

Pure functions over the parsed ``cdk.tf.json`` of one environment's stacks (no cdktf, no
network): each edge of the README's diagram is one small function that walks the path a
request takes (ingress setting, VPC egress, DNS, Private Google Access, firewall rules,
load balancer, NetworkPolicy, IAM, the callers' environment) and returns a ``Verdict``
with the chain of reasons. ``evaluate`` runs every edge that applies to the environment.

Values that are Terraform references in one stack (``${data.terraform_remote_state...}``)
are followed to the stack that produces them, through its ``output`` blocks, down to the
resource and, when the attribute is in the configuration (a CIDR, an address), its value.
The environment file supplies only what the JSON cannot: the self-hosted model's name.

Sources: every rule encoded below cites the GCP or Kubernetes documentation it follows.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

Net = ipaddress.IPv4Network
T = TypeVar("T")
# A block of the synthesized JSON, as json.loads gives it.
Json = dict[str, Any]

# ------------------------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class Step:
    ok: bool
    text: str


@dataclass(frozen=True)
class Verdict:
    edge: str
    steps: tuple[Step, ...]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)


class Chain:
    """The reasons gathered along one edge; each check records why it holds or not."""

    def __init__(self, edge: str) -> None:
        self.edge = edge
        self.steps: list[Step] = []

    def check(self, ok: bool, text: str) -> bool:
        self.steps.append(Step(bool(ok), text))
        return bool(ok)

    def present(self, found: T | None, text: str) -> TypeGuard[T]:
        """``check(found is not None, text)``, telling the type checker that ``found`` is there."""
        return self.check(found is not None, text)

    def ok(self, text: str) -> None:
        self.check(True, text)

    def fail(self, text: str) -> bool:
        return self.check(False, text)

    def verdict(self) -> Verdict:
        return Verdict(self.edge, tuple(self.steps))


class Unresolved(Exception):
    """A reference or resource the check needs is not in the synthesized stacks."""


# ------------------------------------------------------------------------------------------
# CIDR helpers


def net(text: str) -> Net:
    return ipaddress.IPv4Network(str(text), strict=False)


def host(address: str) -> Net:
    return ipaddress.IPv4Network(f"{address}/32")


def within(inner: Net, outers: Iterable[Net]) -> bool:
    return any(inner.subnet_of(outer) for outer in outers)


def overlapping(inner: Net, outers: Iterable[Net]) -> bool:
    return any(inner.overlaps(outer) for outer in outers)


ANYWHERE = net("0.0.0.0/0")
RFC1918 = (net("10.0.0.0/8"), net("172.16.0.0/12"), net("192.168.0.0/16"))
RFC6598 = net("100.64.0.0/10")
# The Private Google Access VIPs (cloud.google.com/vpc/docs/configure-private-google-access#domain-options):
# private.googleapis.com 199.36.153.8/30, restricted.googleapis.com 199.36.153.4/30.
PRIVATE_GOOGLE_ACCESS_VIPS = (net("199.36.153.8/30"), net("199.36.153.4/30"))
# What egress PRIVATE_RANGES_ONLY sends through a Serverless VPC Access connector: internal
# addresses only, RFC 1918 and RFC 6598 (cloud.google.com/run/docs/configuring/vpc-connectors#manage,
# and the API: "Only private IP ranges are routed through the VPC connector",
# cloud.google.com/run/docs/reference/rest/v2/VpcAccess#vpcegress). run.app, even resolved to
# 199.36.153.8/30 by a private zone, is not among them: it leaves Cloud Run directly.
CONNECTOR_PRIVATE_RANGES = (*RFC1918, RFC6598)
# Direct VPC egress with PRIVATE_RANGES_ONLY also sends the Private Google Access VIPs into the
# VPC, which is how a private DNS zone makes Google APIs and run.app internal
# (cloud.google.com/run/docs/configuring/networking-best-practices, "Internal traffic to a Google
# API": private-ranges-only, Private Google Access, and DNS mapping to 199.36.153.8/30 or /4/30).
DIRECT_VPC_PRIVATE_RANGES = (*CONNECTOR_PRIVATE_RANGES, *PRIVATE_GOOGLE_ACCESS_VIPS)

# The layers main.py synthesizes for each environment: stack ids are <env>-<layer>.
LAYERS = ("network", "registry", "database", "cluster", "inference", "services", "workers", "workers-k8s")
HTTPS = 443
POSTGRES = 5432  # libpq's default port when PGPORT is unset
# Memorystore for Redis with in-transit encryption listens on 6378
# (cloud.google.com/memorystore/docs/redis/enabling-in-transit-encryption).
REDIS_TLS = 6378


# ------------------------------------------------------------------------------------------
# Terraform references across the synthesized stacks

_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_REFERENCE = re.compile(r"((?:data\.)?[a-z_][a-z0-9_]*)\.([A-Za-z0-9_-]+)((?:\.[A-Za-z0-9_-]+|\[\d+\])+)")
_REMOTE_PREFIX = "cross-stack-reference-input-"


@dataclass(frozen=True)
class Ref:
    """``type.name.attr`` in ``stack`` (``type`` is ``data.<kind>`` for a data source)."""

    stack: str
    type: str
    name: str
    attr: str

    @property
    def target(self) -> tuple[str, str, str]:
        return (self.stack, self.type, self.name)

    def __str__(self) -> str:
        return f"{self.type}.{self.name}.{self.attr}"


def _walk(value: Any, path: str) -> Any:
    for part in re.findall(r"[A-Za-z0-9_-]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if isinstance(value, list):
                value = value[index] if index < len(value) else None
            # cdktf writes a single nested block as an object: metadata[0] is the object itself.
            continue
        if isinstance(value, list):
            value = value[0] if value else None
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


class Synth:
    """One environment's synthesized stacks, keyed by stack id (``<env>-<layer>``)."""

    def __init__(self, env: str, stacks: Mapping[str, Json]) -> None:
        self.env, self.stacks = env, stacks
        self.own = [self.stack_id(layer) for layer in LAYERS if self.stack_id(layer) in stacks]

    def stack_id(self, layer: str) -> str:
        return f"{self.env}-{layer}"

    def has(self, layer: str) -> bool:
        return self.stack_id(layer) in self.stacks

    def stack(self, stack_id: str) -> Json:
        try:
            return self.stacks[stack_id]
        except KeyError:
            raise Unresolved(f"stack {stack_id} is not in the synthesized output") from None

    def resources(self, layer: str, kind: str) -> dict[str, Json]:
        if not self.has(layer):
            return {}
        found: dict[str, Json] = self.stacks[self.stack_id(layer)].get("resource", {}).get(kind, {})
        return found

    def all_resources(self, kind: str) -> Iterable[tuple[str, str, Json]]:
        """(stack id, name, config) of every ``kind`` resource in this environment's stacks."""
        for stack_id in self.own:
            for name, config in self.stacks[stack_id].get("resource", {}).get(kind, {}).items():
                yield stack_id, name, config

    def config(self, ref: Ref) -> Json:
        block = "data" if ref.type.startswith("data.") else "resource"
        kind = ref.type.removeprefix("data.")
        found: Json | None = self.stack(ref.stack).get(block, {}).get(kind, {}).get(ref.name)
        if found is None:
            raise Unresolved(f"{ref.type}.{ref.name} is not in {ref.stack}")
        return found

    def refs(self, stack_id: str, text: Any) -> list[Ref]:
        """Every reference in ``text``'s interpolations, remote-state reads followed to their producer."""
        if not isinstance(text, str):
            return []
        found = []
        for expression in _INTERPOLATION.findall(text):
            for match in _REFERENCE.finditer(_QUOTED.sub('""', expression)):
                kind, name, attr = match[1], match[2], match[3].lstrip(".")
                if kind == "data":  # data.<kind>.<name>.<attr>
                    kind, (name, _, attr) = f"data.{name}", attr.partition(".")
                found.append(self._follow(Ref(stack_id, kind, name, attr)))
        return found

    def ref(self, stack_id: str, text: Any) -> Ref | None:
        """The one reference ``text`` is (``${a.b.c}``), or None if it is a literal or an expression."""
        if not isinstance(text, str):
            return None
        match = _INTERPOLATION.fullmatch(text.strip())
        if not match:
            return None
        refs = self.refs(stack_id, text)
        bare = _REFERENCE.fullmatch(match[1].strip())
        return refs[0] if bare and len(refs) == 1 else None

    def _follow(self, ref: Ref) -> Ref:
        if ref.type != "data.terraform_remote_state":
            return ref
        producer = ref.name.removeprefix(_REMOTE_PREFIX)
        output = ref.attr.removeprefix("outputs.")
        value = self.stack(producer).get("output", {}).get(output, {}).get("value")
        if value is None:
            raise Unresolved(f"{producer} has no output {output}")
        inner = self.ref(producer, value)
        if inner is None:
            raise Unresolved(f"output {output} of {producer} is not a reference: {value!r}")
        return inner

    def value(self, stack_id: str, item: Any) -> Any:
        """A literal when ``item`` is (or refers to) one set in the configuration; else its Ref."""
        ref = self.ref(stack_id, item)
        if ref is None:
            return item
        attribute = _walk(self.config(ref), ref.attr)
        return ref if attribute is None else self.value(ref.stack, attribute)

    def render(self, stack_id: str, text: str) -> str:
        """``text`` with each plain reference to a literal replaced by that literal."""

        def literal(match: re.Match[str]) -> str:
            resolved = self.value(stack_id, match[0])
            return str(resolved) if isinstance(resolved, (str, int)) else match[0]

        return _INTERPOLATION.sub(literal, text)

    def show(self, stack_id: str, text: Any) -> str:
        """``text`` with each interpolation shown as the resource it resolves to."""
        if not isinstance(text, str):
            return repr(text)

        def shown(match: re.Match[str]) -> str:
            try:
                refs = self.refs(stack_id, match[0])
            except Unresolved:
                return match[0]
            return ", ".join(f"{r.type}.{r.name}.{r.attr} ({r.stack})" for r in refs) or match[0]

        return _INTERPOLATION.sub(shown, text)

    def name_of(self, ref: Ref) -> str:
        return str(self.config(ref).get("name", ref.name))

    def refers_to(self, stack_id: str, text: Any, target: tuple[str, str, str], attr: str | None = None) -> bool:
        return any(r.target == target and (attr is None or r.attr == attr) for r in self.refs(stack_id, text))

    # Principals in IAM bindings, comparable across stacks.

    def principal(self, stack_id: str, member: Any) -> str:
        """``allUsers``, ``serviceAccount:<account_id>``, ``serviceAgent:<api>``, or the literal member."""
        for ref in self.refs(stack_id, member):
            if ref.type == "google_service_account":
                return f"serviceAccount:{self.config(ref).get('account_id', ref.name)}"
            if ref.type == "google_project_service_identity":
                return f"serviceAgent:{self.config(ref).get('service', ref.name)}"
        return str(member)


# ------------------------------------------------------------------------------------------
# Firewall rules
# A packet matches a rule by direction, target (tags, or every instance), protocol and port,
# sources and destinations (cloud.google.com/firewall/docs/firewalls#rule_assignment and
# #sources_and_destinations). Rules are evaluated by priority, lower number first, and at equal
# priority a deny wins over an allow (cloud.google.com/firewall/docs/firewalls#priority_order_for_firewall_rules).
# Below every rule sit the implied rules: allow all egress, deny all ingress, at 65535
# (cloud.google.com/firewall/docs/firewalls#default_firewall_rules).


@dataclass(frozen=True)
class Packet:
    direction: str  # "EGRESS" or "INGRESS"
    source: Net
    destination: Net
    port: int
    protocol: str = "tcp"
    target_tags: frozenset[str] = frozenset()  # the sender's tags for egress, the receiver's for ingress
    source_tags: frozenset[str] = frozenset()  # ingress only: the sender's tags

    def __str__(self) -> str:
        tags = sorted(self.target_tags | self.source_tags)
        shown = f" [tags {', '.join(tags)}]" if tags else ""
        return f"{self.direction.lower()} {self.protocol}:{self.port} {self.source}{shown} -> {self.destination}"


@dataclass(frozen=True)
class FirewallRule:
    name: str
    direction: str
    priority: int
    action: str  # "allow" or "deny"
    entries: tuple[tuple[str, tuple[str, ...]], ...]  # (protocol, ports)
    source_ranges: tuple[Net, ...] = ()
    destination_ranges: tuple[Net, ...] = ()
    source_tags: frozenset[str] = frozenset()
    target_tags: frozenset[str] = frozenset()
    target_service_accounts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, config: Json) -> FirewallRule:
        action = "deny" if config.get("deny") else "allow"
        return cls(
            name=config.get("name", "?"),
            direction=config.get("direction", "INGRESS"),
            priority=int(config.get("priority", 1000)),
            action=action,
            entries=tuple(
                (entry.get("protocol", "all").lower(), tuple(str(p) for p in entry.get("ports") or ()))
                for entry in config.get(action) or ()
            ),
            source_ranges=tuple(net(r) for r in config.get("source_ranges") or ()),
            destination_ranges=tuple(net(r) for r in config.get("destination_ranges") or ()),
            source_tags=frozenset(config.get("source_tags") or ()),
            target_tags=frozenset(config.get("target_tags") or ()),
            target_service_accounts=frozenset(config.get("target_service_accounts") or ()),
        )

    def _carries(self, packet: Packet) -> bool:
        for protocol, ports in self.entries:
            if protocol not in ("all", packet.protocol):
                continue
            if not ports:
                return True
            for port in ports:
                low, _, high = port.partition("-")
                if int(low) <= packet.port <= int(high or low):
                    return True
        return False

    def matches(self, packet: Packet, *, whole: bool) -> bool:
        """Whether the rule applies to the packet: to all of its ranges (``whole``) or to some of them."""
        contains = within if whole else overlapping
        if self.direction != packet.direction or not self._carries(packet):
            return False
        if self.target_service_accounts:
            return False  # Cloud Run and GKE Autopilot nodes are never targeted here by service account
        if self.target_tags and not self.target_tags & packet.target_tags:
            return False
        if packet.direction == "INGRESS":
            # An ingress rule without sources applies to 0.0.0.0/0.
            sources_ok = (not self.source_ranges and not self.source_tags) or contains(
                packet.source, self.source_ranges
            )
            sources_ok = sources_ok or bool(self.source_tags & packet.source_tags)
        else:
            sources_ok = not self.source_ranges or contains(packet.source, self.source_ranges)
        destinations = self.destination_ranges or (ANYWHERE,)
        return sources_ok and contains(packet.destination, destinations)


IMPLIED_RULES = (
    FirewallRule("implied-allow-egress", "EGRESS", 65535, "allow", (("all", ()),), destination_ranges=(ANYWHERE,)),
    FirewallRule("implied-deny-ingress", "INGRESS", 65535, "deny", (("all", ()),), source_ranges=(ANYWHERE,)),
)


def firewall_decides(rules: Iterable[FirewallRule], packet: Packet) -> tuple[bool, str]:
    """(allowed, why): the first rule in evaluation order that decides the packet.

    An allow decides only when it covers the whole of the packet's ranges; a deny decides as
    soon as it covers any part of them, so a verdict of "allowed" holds for every address."""
    ordered = sorted((*rules, *IMPLIED_RULES), key=lambda r: (r.priority, r.action != "deny"))
    for rule in ordered:
        if rule.action == "deny" and rule.matches(packet, whole=False):
            return False, f"{packet}: denied by {rule.name} (priority {rule.priority})"
        if rule.action == "allow" and rule.matches(packet, whole=True):
            denies_below = (r for r in ordered if r.action == "deny" and r.priority >= rule.priority)
            later = next((r for r in denies_below if r.matches(packet, whole=False)), None)
            beats = f", ahead of {later.name} ({later.priority})" if later else ""
            return True, f"{packet}: allowed by {rule.name} (priority {rule.priority}{beats})"
    return False, f"{packet}: no rule allows it"  # unreachable: the implied rules decide everything


def firewall_rules(s: Synth, network: Ref) -> list[FirewallRule]:
    """The enabled rules of ``network`` (a VPC reference)."""
    return [
        FirewallRule.parse(config)
        for stack_id, _, config in s.all_resources("google_compute_firewall")
        if not config.get("disabled") and s.refers_to(stack_id, config.get("network"), network.target)
    ]


# ------------------------------------------------------------------------------------------
# Cloud Run services


@dataclass(frozen=True)
class RunService:
    key: str
    config: Json

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.key))

    @property
    def ingress(self) -> str:
        return str(self.config.get("ingress", "INGRESS_TRAFFIC_ALL"))  # the API's default

    @property
    def template(self) -> Json:
        return self.config.get("template") or {}

    @property
    def env(self) -> dict[str, Any]:
        containers = self.template.get("containers") or ()
        variables = containers[0].get("env") or () if containers else ()
        return {e["name"]: e.get("value") for e in variables if "name" in e}


def run_service(s: Synth, role: str) -> RunService | None:
    for key, config in s.resources("services", "google_cloud_run_v2_service").items():
        if config.get("name") == f"{s.env}-{role}":
            return RunService(key, config)
    return None


def _service_target(s: Synth, service: RunService) -> tuple[str, str, str]:
    return (s.stack_id("services"), "google_cloud_run_v2_service", service.key)


def identity(s: Synth, service: RunService) -> str:
    """The service's runtime service account, as a principal."""
    return s.principal(s.stack_id("services"), service.template.get("service_account", "default compute account"))


def invokers(s: Synth, service: RunService) -> set[str]:
    """Principals holding roles/run.invoker on the service, or on the project."""
    target, found = _service_target(s, service), set()
    for stack_id, _, grant in s.all_resources("google_cloud_run_v2_service_iam_member"):
        if grant.get("role") == "roles/run.invoker" and s.refers_to(stack_id, grant.get("name"), target):
            found.add(s.principal(stack_id, grant.get("member")))
    for stack_id, _, grant in s.all_resources("google_cloud_run_v2_service_iam_binding"):
        if grant.get("role") == "roles/run.invoker" and s.refers_to(stack_id, grant.get("name"), target):
            found |= {s.principal(stack_id, m) for m in grant.get("members") or ()}
    return found | project_holders(s, "roles/run.invoker")


def project_holders(s: Synth, role: str) -> set[str]:
    return {
        s.principal(stack_id, grant.get("member"))
        for stack_id, _, grant in s.all_resources("google_project_iam_member")
        if grant.get("role") == role
    }


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


def private_dns(s: Synth, network: Ref, hostname: str) -> tuple[str, list[str]] | None:
    """(zone, A records) answering ``hostname`` in a private zone visible to ``network``."""
    best: tuple[str, str, str] | None = None  # (dns name, stack, zone key)
    for stack_id, key, zone in s.all_resources("google_dns_managed_zone"):
        visible = any(
            s.refers_to(stack_id, n.get("network_url"), network.target)
            for n in (zone.get("private_visibility_config") or {}).get("networks") or ()
        )
        dns_name = zone.get("dns_name", "")
        if (
            zone.get("visibility") == "private"
            and visible
            and (hostname == dns_name or hostname.endswith("." + dns_name))
            and (best is None or len(dns_name) > len(best[0]))
        ):
            best = (dns_name, stack_id, key)
    if best is None:
        return None
    dns_name, zone_stack, zone_key = best
    zone_target = (zone_stack, "google_dns_managed_zone", zone_key)
    exact, wildcard = None, None
    for stack_id, _, record in s.all_resources("google_dns_record_set"):
        if record.get("type") != "A" or not s.refers_to(stack_id, record.get("managed_zone"), zone_target):
            continue
        name = record.get("name", "")
        if name == hostname:
            exact = record.get("rrdatas") or []
        elif name.startswith("*.") and hostname.endswith(name[1:]):
            wildcard = record.get("rrdatas") or []
    # A wildcard answers any name below it that has no record of its own (RFC 4592).
    answer = exact if exact is not None else wildcard
    return (dns_name, answer) if answer else (dns_name, [])


def _firewall(c: Chain, rules: list[FirewallRule], packet: Packet) -> bool:
    allowed, why = firewall_decides(rules, packet)
    return c.check(allowed, why)


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
    # cloud.google.com/vpc/docs/private-google-access: the VIPs are reachable only from subnets
    # with Private Google Access enabled.
    c.check(
        attached.subnet.get("private_ip_google_access") is True,
        f"subnet {attached.subnet_name} ({attached.source}) has Private Google Access",
    )
    rules = firewall_rules(s, attached.network)
    for destination in ipaddress.collapse_addresses(addresses):
        _firewall(c, rules, Packet("EGRESS", attached.source, destination, HTTPS, target_tags=attached.tags))


# ------------------------------------------------------------------------------------------
# Routing in the orchestrator (services/modelcalls/routing.py)


def route_for(model: str, routes: list[Json]) -> Json | None:
    """The first route matching ``model``: its exact name, or a prefix ending in ``*``."""
    for route in routes:
        match = route.get("match", "")
        if match == model or (match.endswith("*") and model.startswith(match[:-1])):
            return route
    return None


def check_route(c: Chain, routes: list[Json], model: str, backend: str) -> None:
    route = route_for(model, routes)
    if route is None:
        c.fail(f"ROUTES: no route matches {model}")
        return
    first = (route.get("backends") or [None])[0]
    c.check(
        first == backend,
        f"ROUTES: {model} takes the first matching route {route.get('match')!r} -> {route.get('backends')}"
        + ("" if first == backend else f", not the self-hosted backend {backend!r}"),
    )


def orchestrator_json(c: Chain, service: RunService, name: str) -> Any:
    try:
        return json.loads(service.env[name])
    except (KeyError, TypeError, ValueError):
        c.fail(f"{service.name}'s {name} is missing or not JSON")
        return None


# ------------------------------------------------------------------------------------------
# Callers: what an edge needs of whoever makes the call


@dataclass(frozen=True)
class Caller:
    name: str
    stack_id: str  # where its environment's references are resolved
    env: Mapping[str, Any]
    identity: str  # its Google service account, as a principal


@dataclass(frozen=True)
class PodCaller(Caller):
    """A Deployment's Pods on a VPC-native GKE cluster. To other VPC ranges their packets keep the
    Pod's own address: GKE's ip-masq-agent leaves RFC 1918 destinations unmasqueraded
    (cloud.google.com/kubernetes-engine/docs/concepts/ip-masquerade-agent)."""

    network: Ref
    source: Net  # the cluster's Pod range

    def json(self, c: Chain, name: str) -> Any:
        try:
            return json.loads(self.env[name])
        except (KeyError, TypeError, ValueError):
            c.fail(f"{self.name}'s {name} is missing or not JSON")
            return None


def batch_worker(s: Synth, c: Chain) -> PodCaller | None:
    """The batch worker's Deployment in the workers' Kubernetes layer, with its cluster's network."""
    k8s_id = s.stack_id("workers-k8s")
    deployments = [
        d
        for d in s.resources("workers-k8s", "kubernetes_deployment_v1").values()
        if (d.get("metadata") or {}).get("name") == "worker"
    ]
    clusters = list(s.resources("workers", "google_container_cluster").values())
    if not c.check(bool(deployments) and bool(clusters), f"the worker Deployment in {k8s_id} and its cluster"):
        return None
    pod = ((deployments[0].get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("container") or ()
    env = {e.get("name"): e.get("value") for container in containers[:1] for e in container.get("env") or ()}
    # Workload Identity: the Pods act as the Google account their Kubernetes service account names
    # (cloud.google.com/kubernetes-engine/docs/how-to/workload-identity).
    account_ref = s.ref(k8s_id, pod.get("service_account_name"))
    account = s.config(account_ref) if account_ref else {}
    email = ((account.get("metadata") or {}).get("annotations") or {}).get("iam.gke.io/gcp-service-account")
    who = s.principal(account_ref.stack if account_ref else k8s_id, email)
    if not c.check(who.startswith("serviceAccount:"), f"the worker's Pods act as {who} (Workload Identity)"):
        return None
    cluster, workers_id = clusters[0], s.stack_id("workers")
    subnet_ref, network_ref = s.ref(workers_id, cluster.get("subnetwork")), s.ref(workers_id, cluster.get("network"))
    if not c.check(subnet_ref is not None and network_ref is not None, "the workers cluster's VPC and subnet resolve"):
        return None
    assert subnet_ref is not None and network_ref is not None
    subnet = s.config(subnet_ref)
    pods_range = (cluster.get("ip_allocation_policy") or {}).get("cluster_secondary_range_name")
    ranges = {r.get("range_name"): net(r["ip_cidr_range"]) for r in subnet.get("secondary_ip_range") or ()}
    if not c.check(pods_range in ranges, f"the workers' Pods range {pods_range} is a range of {subnet.get('name')}"):
        return None
    c.ok(f"the worker's Pods send from {ranges[pods_range]} ({subnet.get('name')}'s {pods_range})")
    return PodCaller("worker", k8s_id, env, who, network_ref, ranges[pods_range])


# ------------------------------------------------------------------------------------------
# Kubernetes objects


def labels_select(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


@dataclass(frozen=True)
class Workload:
    """The model server's pods: namespace, labels, named container ports."""

    namespace: str
    labels: dict[str, str]
    ports: dict[str, int]  # container port name -> number
    numbers: frozenset[int]

    def port(self, value: Any) -> int | None:
        """A port given by number or by container port name."""
        text = str(value)
        return int(text) if text.isdigit() else self.ports.get(text)


def workloads(s: Synth) -> list[Workload]:
    stack_id, found = s.stack_id("inference"), []
    for _, deployment in s.resources("inference", "kubernetes_deployment_v1").items():
        template = (deployment.get("spec") or {}).get("template") or {}
        containers = (template.get("spec") or {}).get("container") or ()
        ports = [p for container in containers for p in container.get("port") or ()]
        found.append(
            Workload(
                namespace=str(s.value(stack_id, (deployment.get("metadata") or {}).get("namespace", "default"))),
                labels=(template.get("metadata") or {}).get("labels") or {},
                ports={p["name"]: int(p["container_port"]) for p in ports if p.get("name")},
                numbers=frozenset(int(p["container_port"]) for p in ports),
            )
        )
    return found


def _policy_port_matches(workload: Workload, entry: Mapping[str, Any], port: int) -> bool:
    if str(entry.get("protocol", "TCP")).upper() != "TCP":
        return False
    if entry.get("port") is None:
        return True  # every port of the protocol
    low = workload.port(entry["port"])
    high = int(entry.get("end_port") or low or 0)
    return low is not None and low <= port <= high


def network_policy_admits(
    s: Synth,
    workload: Workload,
    port: int,
    *,
    cidr: Net | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> tuple[bool, str]:
    """Whether the NetworkPolicies selecting ``workload`` admit a source on ``port`` (TCP).

    kubernetes.io/docs/concepts/services-networking/network-policies: pods no policy selects
    for Ingress admit everything; once selected, a connection is admitted if any ingress rule
    of any selecting policy allows it. A rule without ``from`` admits every source, without
    ``ports`` every port; the peers of ``from`` are alternatives; an ``ipBlock`` matches
    addresses (minus ``except``), a ``namespaceSelector`` the labels of the source's namespace.
    Named ports are resolved through the pod's container ports."""
    stack_id, selecting = s.stack_id("inference"), []
    for _, policy in s.resources("inference", "kubernetes_network_policy_v1").items():
        spec = policy.get("spec") or {}
        namespace = str(s.value(stack_id, (policy.get("metadata") or {}).get("namespace", "default")))
        types = spec.get("policy_types") or ["Ingress"]
        if (
            namespace == workload.namespace
            and "Ingress" in types
            and labels_select((spec.get("pod_selector") or {}).get("match_labels"), workload.labels)
        ):
            selecting.append(policy)
    source = str(cidr) if cidr else f"namespace {dict(namespace_labels or {})}"
    if not selecting:
        return True, f"no NetworkPolicy selects the pods: {source} is admitted on {port}"
    for policy in selecting:
        name = (policy.get("metadata") or {}).get("name", "?")
        for rule in (policy.get("spec") or {}).get("ingress") or ():
            ports = rule.get("ports")
            if ports and not any(_policy_port_matches(workload, p, port) for p in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True, f"NetworkPolicy {name} admits every source on {port}"
            for peer in peers:
                block, namespaces, pods = peer.get("ip_block"), peer.get("namespace_selector"), peer.get("pod_selector")
                if (
                    cidr is not None
                    and block
                    and cidr.subnet_of(net(block["cidr"]))
                    and not overlapping(cidr, [net(e) for e in block.get("except") or ()])
                ):
                    return True, f"NetworkPolicy {name} admits ipBlock {block['cidr']} on {port}"
                if (
                    namespace_labels is not None
                    and namespaces is not None
                    and not (pods or {}).get("match_labels")
                    and not namespaces.get("match_expressions")
                    and labels_select(namespaces.get("match_labels"), namespace_labels)
                ):
                    selector = namespaces.get("match_labels") or {}
                    return True, f"NetworkPolicy {name} admits namespaceSelector {selector} on {port}"
    return False, f"no NetworkPolicy selecting the pods admits {source} on {port}"


# ------------------------------------------------------------------------------------------
# The edges


def browser_to_frontend(s: Synth, facts: EnvironmentFacts) -> Verdict:
    return _from_browser(s, "frontend", allow_iap=True)


def browser_to_gateway(s: Synth, facts: EnvironmentFacts) -> Verdict:
    return _from_browser(s, "gateway", allow_iap=False)


def _from_browser(s: Synth, role: str, *, allow_iap: bool) -> Verdict:
    c = Chain(f"browser -> {role}")
    service = run_service(s, role)
    if not c.present(service, f"Cloud Run service {s.env}-{role} in {s.stack_id('services')}"):
        return c.verdict()
    # cloud.google.com/run/docs/securing/ingress#settings: "All" admits requests from the internet.
    c.check(service.ingress == "INGRESS_TRAFFIC_ALL", f"{service.name}: ingress {service.ingress}")
    c.check(not service.config.get("default_uri_disabled"), f"{service.name}: its run.app URL is enabled")
    allowed = invokers(s, service)
    if service.config.get("invoker_iam_disabled"):
        # cloud.google.com/run/docs/authenticating/public: with the invoker check off, anyone may call.
        c.ok(f"{service.name}: the Cloud Run invoker IAM check is disabled")
    elif "allUsers" in allowed:
        # cloud.google.com/run/docs/authenticating/public: roles/run.invoker for allUsers.
        c.ok(f"{service.name}: roles/run.invoker for allUsers")
    elif allow_iap and service.config.get("iap_enabled"):
        # cloud.google.com/run/docs/securing/identity-aware-proxy-cloud-run: IAP lets through the
        # principals holding roles/iap.httpsResourceAccessor, and invokes the service as the IAP
        # service agent, which needs roles/run.invoker.
        members = sorted(
            s.principal(stack_id, grant.get("member"))
            for stack_id, _, grant in s.all_resources("google_iap_web_cloud_run_service_iam_member")
            if grant.get("role") == "roles/iap.httpsResourceAccessor"
            and s.refers_to(stack_id, grant.get("cloud_run_service_name"), _service_target(s, service))
        )
        c.check(bool(members), f"{service.name}: IAP admits {', '.join(members) or 'nobody'}")
        c.check(
            "serviceAgent:iap.googleapis.com" in allowed,
            f"{service.name}: the IAP service agent holds roles/run.invoker",
        )
    else:
        c.fail(
            f"{service.name}: browsers cannot invoke it; roles/run.invoker: {', '.join(sorted(allowed)) or 'nobody'}"
        )
    return c.verdict()


def gateway_to_orchestrator(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("gateway -> orchestrator")
    gateway, orchestrator = run_service(s, "gateway"), run_service(s, "orchestrator")
    if not c.check(gateway is not None and orchestrator is not None, "the gateway and orchestrator services exist"):
        return c.verdict()
    assert gateway is not None and orchestrator is not None
    url = gateway.env.get("ORCHESTRATOR_URL")
    c.check(
        s.refers_to(s.stack_id("services"), url, _service_target(s, orchestrator), "uri"),
        f"{gateway.name}: ORCHESTRATOR_URL = {s.show(s.stack_id('services'), url)}",
    )
    auth = gateway.env.get("ORCHESTRATOR_AUTH")
    c.check(auth == "google-id-token", f"{gateway.name}: ORCHESTRATOR_AUTH = {auth} (a Google ID token for the call)")
    _caller_check(s, c, gateway, orchestrator)
    reach_internal_service(s, c, gateway, orchestrator)
    return c.verdict()


def _caller_check(s: Synth, c: Chain, gateway: RunService, orchestrator: RunService) -> None:
    """The orchestrator checks the gateway's ID token itself (services/orchestrator/callers.py):
    the token must be minted for the audience it checks, by an account it admits."""
    services_id = s.stack_id("services")
    if orchestrator.env.get("CALLER_AUTH") != "google-id-token":
        c.ok(f"{orchestrator.name}: CALLER_AUTH = {orchestrator.env.get('CALLER_AUTH')}: it checks no caller")
        return
    minted = gateway.env.get("ORCHESTRATOR_AUDIENCE") or gateway.env.get("ORCHESTRATOR_URL")
    checked = orchestrator.env.get("CALLER_AUDIENCE")
    c.check(
        minted == checked,
        f"{gateway.name}: its ID token's audience {s.show(services_id, minted)} is the orchestrator's "
        f"CALLER_AUDIENCE {s.show(services_id, checked)}",
    )
    callers = str(orchestrator.env.get("ALLOWED_CALLERS") or "").split(",")
    allowed = {s.principal(services_id, caller.strip()) for caller in callers if caller.strip()}
    who = identity(s, gateway)
    c.check(
        who in allowed,
        f"{orchestrator.name}: ALLOWED_CALLERS ({', '.join(sorted(allowed)) or 'nobody'}) admits the gateway, {who}",
    )


def orchestrator_to_inference(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("orchestrator -> inference")
    orchestrator = run_service(s, "orchestrator")
    if not c.present(orchestrator, "the orchestrator service exists"):
        return c.verdict()
    backends, routes = orchestrator_json(c, orchestrator, "BACKENDS"), orchestrator_json(c, orchestrator, "ROUTES")
    if backends is None or routes is None:
        return c.verdict()
    if facts.placement == "cloud_run":
        _to_cloud_run_model(s, c, orchestrator, backends, routes, facts.self_hosted_model)
    else:
        _to_gke_model(s, c, orchestrator, backends, routes, facts.self_hosted_model)
    return c.verdict()


def _to_cloud_run_model(
    s: Synth, c: Chain, orchestrator: RunService, backends: Json, routes: list[Any], model: str
) -> None:
    inference = run_service(s, "inference")
    if not c.present(inference, f"placement cloud_run: Cloud Run service {s.env}-inference"):
        return
    target, services_id = _service_target(s, inference), s.stack_id("services")
    names = [n for n, b in backends.items() if s.refers_to(services_id, (b or {}).get("url"), target, "uri")]
    if not c.check(bool(names), f"BACKENDS: {', '.join(names) or 'no backend'} points at {inference.name}'s URI"):
        return
    backend = backends[names[0]]
    # A Cloud Run server that admits only the orchestrator's identity needs its ID token
    # (cloud.google.com/run/docs/authenticating/service-to-service).
    c.check(
        backend.get("auth") == "google-id-token",
        f"BACKENDS.{names[0]}: auth {backend.get('auth', 'none')!r}"
        + ("" if backend.get("auth") == "google-id-token" else ": no ID token, so Cloud Run answers 403"),
    )
    check_route(c, routes, model, names[0])
    reach_internal_service(s, c, orchestrator, inference)


def _internal_load_balancer(s: Synth) -> tuple[Json, str] | None:
    for _, service in s.resources("inference", "kubernetes_service_v1").items():
        annotations = (service.get("metadata") or {}).get("annotations") or {}
        if (service.get("spec") or {}).get("type") == "LoadBalancer" and (
            annotations.get("networking.gke.io/load-balancer-type") == "Internal"
        ):
            return service, str(s.value(s.stack_id("inference"), service["spec"].get("load_balancer_ip", "")))
    return None


@dataclass(frozen=True)
class ModelTarget:
    """The self-hosted model server behind its internal load balancer, as a caller's BACKENDS reach it."""

    spec: Json  # the load balancer Service's spec
    destination: Net  # its address
    port: int
    pod: Workload
    target_port: int


def _gke_model_target(
    s: Synth, c: Chain, caller_stack: str, backends: Json, routes: list[Any], model: str
) -> ModelTarget | None:
    if not c.check(s.has("inference"), f"placement gke: stack {s.stack_id('inference')}"):
        return None
    # cloud.google.com/kubernetes-engine/docs/concepts/service-load-balancer-parameters: the
    # annotation networking.gke.io/load-balancer-type "Internal" makes an internal passthrough
    # Network Load Balancer; loadBalancerIP sets its address; loadBalancerSourceRanges limits sources.
    found = _internal_load_balancer(s)
    if not c.present(found, "an internal passthrough load balancer Service (type LoadBalancer, Internal)"):
        return None
    lb, address = found
    spec, inference_id = lb["spec"], s.stack_id("inference")
    address_ref = s.ref(inference_id, spec.get("load_balancer_ip"))
    reserved = s.config(address_ref) if address_ref and address_ref.type == "google_compute_address" else {}
    subnet_ref = s.ref(address_ref.stack, reserved.get("subnetwork")) if address_ref and reserved else None
    subnet = s.config(subnet_ref) if subnet_ref else {}
    in_subnet = bool(subnet) and address.count(".") == 3 and within(host(address), [net(subnet["ip_cidr_range"])])
    if not c.check(
        reserved.get("address_type") == "INTERNAL" and in_subnet,
        f"its loadBalancerIP {address} is the reserved internal address {reserved.get('name', '?')}"
        f" in subnet {subnet.get('name', '?')} ({subnet.get('ip_cidr_range', '?')})",
    ):
        return None
    service_ports = {int(p["port"]): p for p in spec.get("port") or ()}

    names = []
    for name, backend in backends.items():
        url = s.render(caller_stack, str((backend or {}).get("url", "")))
        match = re.fullmatch(r"https?://([^/:]+)(?::(\d+))?(/.*)?", url)
        if (backend or {}).get("kind") == "openai" and match and match[1] == address:
            names.append((name, url, int(match[2] or (443 if url.startswith("https") else 80))))
    if not c.check(bool(names), f"BACKENDS: {', '.join(n for n, *_ in names) or 'no backend'} points at {address}"):
        return None
    name, url, port = names[0]
    listed = ", ".join(map(str, service_ports)) or "none"
    if not c.check(
        port in service_ports,
        f"BACKENDS.{name} = {url}: port {port} is a port of Service {lb['metadata'].get('name')} ({listed})",
    ):
        return None
    check_route(c, routes, model, name)

    pods = [w for w in workloads(s) if labels_select(spec.get("selector"), w.labels)]
    if not c.check(bool(pods), f"the Service's selector {spec.get('selector')} selects the model server's pods"):
        return None
    pod = pods[0]
    target_port = pod.port(service_ports[port].get("target_port", port))
    if not c.check(target_port in pod.numbers, f"Service port {port} -> container port {target_port}"):
        return None
    assert target_port is not None
    return ModelTarget(spec, host(address), port, pod, target_port)


def _model_server_admits(s: Synth, c: Chain, target: ModelTarget, source: Net) -> None:
    """The load balancer's source ranges and the pods' NetworkPolicy admit ``source``."""
    spec = target.spec
    ranges = [net(r) for r in spec.get("load_balancer_source_ranges") or ()] or [ANYWHERE]
    c.check(
        within(source, ranges),
        f"loadBalancerSourceRanges {', '.join(map(str, ranges))} include {source}",
    )
    admitted, why = network_policy_admits(s, target.pod, target.target_port, cidr=source)
    c.check(admitted, why)
    if admitted and "ipBlock" in why:
        # The pods see the client's own address only with externalTrafficPolicy Local; with
        # Cluster a node may source-NAT it (kubernetes.io/docs/tutorials/services/source-ip/,
        # cloud.google.com/kubernetes-engine/docs/how-to/service-parameters#externalTrafficPolicy).
        policy = spec.get("external_traffic_policy", "Cluster")
        c.check(
            policy == "Local", f"externalTrafficPolicy {policy}: the pods see the caller's own address for the ipBlock"
        )


def _to_gke_model(s: Synth, c: Chain, orchestrator: RunService, backends: Json, routes: list[Any], model: str) -> None:
    target = _gke_model_target(s, c, s.stack_id("services"), backends, routes, model)
    if target is None:
        return
    attached = attachment(s, c, orchestrator)
    if attached is None:
        return
    destination, port = target.destination, target.port
    if not c.check(
        attached.routes_into_vpc(destination), f"{orchestrator.name}: {attached.describe_routing(destination)}"
    ):
        return
    rules = firewall_rules(s, attached.network)
    _firewall(c, rules, Packet("EGRESS", attached.source, destination, port, target_tags=attached.tags))
    # Ingress rules cannot match Direct VPC egress by tag; they match its subnet's range
    # (cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations). Connector VMs' tags
    # can be ingress sources (cloud.google.com/vpc/docs/serverless-vpc-access#restrict-access).
    source_tags = attached.tags if attached.connector else frozenset()
    _firewall(c, rules, Packet("INGRESS", attached.source, destination, port, source_tags=source_tags))
    _model_server_admits(s, c, target, attached.source)


def worker_to_inference(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("worker -> inference")
    worker = batch_worker(s, c)
    if worker is None:
        return c.verdict()
    backends, routes = worker.json(c, "BACKENDS"), worker.json(c, "ROUTES")
    if backends is None or routes is None:
        return c.verdict()
    if facts.placement != "gke":
        c.fail("the worker reaches a self-hosted model on GKE only; this check knows no other placement")
        return c.verdict()
    target = _gke_model_target(s, c, worker.stack_id, backends, routes, facts.self_hosted_model)
    if target is None:
        return c.verdict()
    # Both clusters are in one VPC: the Pods' packets meet its egress rules on the way out and the
    # model nodes' ingress rules on the way in (a passthrough load balancer keeps the source).
    rules = firewall_rules(s, worker.network)
    _firewall(c, rules, Packet("EGRESS", worker.source, target.destination, target.port))
    _firewall(c, rules, Packet("INGRESS", worker.source, target.destination, target.port))
    _model_server_admits(s, c, target, worker.source)
    return c.verdict()


def orchestrator_to_database(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("orchestrator -> Cloud SQL")
    orchestrator = run_service(s, "orchestrator")
    instances = list(s.all_resources("google_sql_database_instance"))
    if not c.check(
        orchestrator is not None and bool(instances), "the orchestrator service and a Cloud SQL instance exist"
    ):
        return c.verdict()
    assert orchestrator is not None

    def reach(network: Ref, psa_range: Net, port: int) -> bool:
        return _into_private_services_range(s, c, orchestrator, network, psa_range, port)

    caller = Caller(orchestrator.name, s.stack_id("services"), orchestrator.env, identity(s, orchestrator))
    _to_database(s, c, caller, instances, reach)
    return c.verdict()


def _into_private_services_range(
    s: Synth, c: Chain, caller: RunService, network: Ref, psa_range: Net, port: int
) -> bool:
    """``caller`` (Cloud Run) sends to ``port`` on the Private Services Access range of ``network``;
    False when it has no VPC attachment at all."""
    attached = attachment(s, c, caller)
    if attached is None:
        return False
    c.check(
        attached.network.target == network.target,
        f"{caller.name} egresses into {s.name_of(network)}, the instance's peered VPC",
    )
    if c.check(attached.routes_into_vpc(psa_range), f"{caller.name}: {attached.describe_routing(psa_range)}"):
        # Cloud SQL and Memorystore sit in Google's peered network: only our egress rules apply
        # on the way (cloud.google.com/vpc/docs/vpc-peering#firewall_rules). The whole range, as
        # the instance's address is allocated from it at deploy time.
        packet = Packet("EGRESS", attached.source, psa_range, port, target_tags=attached.tags)
        _firewall(c, firewall_rules(s, attached.network), packet)
    return True


def gateway_to_redis(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("gateway -> Memorystore (rate limit)")
    gateway = run_service(s, "gateway")
    instances = list(s.all_resources("google_redis_instance"))
    if not c.check(gateway is not None and bool(instances), "the gateway service and a Memorystore instance exist"):
        return c.verdict()
    assert gateway is not None
    services, env = s.stack_id("services"), gateway.env
    matching = [
        (st, key, inst)
        for st, key, inst in instances
        if s.refers_to(services, env.get("REDIS_HOST"), (st, "google_redis_instance", key), "host")
    ]
    if not c.check(bool(matching), f"REDIS_HOST = {s.show(services, env.get('REDIS_HOST'))}"):
        return c.verdict()
    stack_id, key, instance = matching[0]
    # cloud.google.com/memorystore/docs/redis/about-redis-auth, .../about-in-transit-encryption:
    # with AUTH and SERVER_AUTHENTICATION a client sends the AUTH string over TLS, on port 6378.
    c.check(instance.get("auth_enabled") is True, f"{instance.get('name')}: AUTH required")
    c.check(
        instance.get("transit_encryption_mode") == "SERVER_AUTHENTICATION",
        f"{instance.get('name')}: in-transit encryption (TLS, server authenticated)",
    )
    c.check(
        s.refers_to(services, env.get("REDIS_SERVER_CA"), (stack_id, "google_redis_instance", key)),
        "REDIS_SERVER_CA is the instance's server CA",
    )
    containers = gateway.template.get("containers") or ()
    secret_names = {
        e.get("name")
        for e in (containers[0].get("env") or () if containers else ())
        if ((e.get("value_source") or {}).get("secret_key_ref") or {}).get("secret")
    }
    c.check("REDIS_AUTH" in secret_names, "REDIS_AUTH comes from Secret Manager")
    port = int(env.get("REDIS_PORT") or 0)
    c.check(port == REDIS_TLS, f"REDIS_PORT = {port}, the TLS port {REDIS_TLS}")
    c.check(instance.get("connect_mode") == "PRIVATE_SERVICE_ACCESS", "connect mode PRIVATE_SERVICE_ACCESS")
    psa = _private_services_range(s, c, stack_id, {"private_network": instance.get("authorized_network")})
    if psa is None:
        return c.verdict()
    network, psa_range = psa
    _into_private_services_range(s, c, gateway, network, psa_range, port)
    return c.verdict()


def worker_to_database(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("worker -> Cloud SQL")
    worker = batch_worker(s, c)
    instances = list(s.all_resources("google_sql_database_instance"))
    if worker is None or not c.check(bool(instances), "a Cloud SQL instance exists"):
        return c.verdict()

    def reach(network: Ref, psa_range: Net, port: int) -> bool:
        c.check(
            worker.network.target == network.target,
            f"{worker.name}'s cluster is in {s.name_of(network)}, the instance's peered VPC",
        )
        # From the Pods' own addresses (see PodCaller), through the VPC's egress rules only, as above.
        _firewall(c, firewall_rules(s, worker.network), Packet("EGRESS", worker.source, psa_range, port))
        return True

    _to_database(s, c, Caller(worker.name, worker.stack_id, worker.env, worker.identity), instances, reach)
    return c.verdict()


def _to_database(
    s: Synth,
    c: Chain,
    caller: Caller,
    instances: list[tuple[str, str, Json]],
    reach: Callable[[Ref, Net, int], bool],
) -> None:
    """``caller`` logs in to the instance its PGHOST names; ``reach`` checks the network path."""
    env = caller.env
    pghost = env.get("PGHOST")
    matching = [
        (st, key, inst)
        for st, key, inst in instances
        if s.refers_to(caller.stack_id, pghost, (st, "google_sql_database_instance", key), "private_ip_address")
    ]
    if not c.check(bool(matching), f"PGHOST = {s.show(caller.stack_id, pghost)}"):
        return
    stack_id, key, instance = matching[0]
    settings = instance.get("settings") or {}
    ip = settings.get("ip_configuration") or {}
    # cloud.google.com/sql/docs/postgres/private-ip: ipv4_enabled false leaves only the private IP.
    c.check(ip.get("ipv4_enabled") is False, f"{instance.get('name')}: no public IP (ipv4_enabled false)")
    psa = _private_services_range(s, c, stack_id, ip)
    if psa is None:
        return
    network, psa_range = psa
    if not reach(network, psa_range, int(env.get("PGPORT") or POSTGRES)):
        return

    # cloud.google.com/sql/docs/postgres/configure-ssl-instance: ENCRYPTED_ONLY needs TLS,
    # TRUSTED_CLIENT_CERTIFICATE_REQUIRED a client certificate too.
    ssl_mode, sslmode = ip.get("ssl_mode", "ALLOW_UNENCRYPTED_AND_ENCRYPTED"), env.get("PGSSLMODE")
    c.check(
        sslmode in ("require", "verify-ca", "verify-full") and ssl_mode != "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
        f"PGSSLMODE = {sslmode} against ssl_mode {ssl_mode}",
    )
    if env.get("DATABASE_AUTH") == "iam":
        _iam_login(s, c, caller, stack_id, key, instance)
    else:
        c.ok(f"DATABASE_AUTH = {env.get('DATABASE_AUTH')}: password login, not checked here")
    database = env.get("PGDATABASE")
    c.check(
        any(
            s.refers_to(caller.stack_id, database, (st, "google_sql_database", k))
            and s.refers_to(st, db.get("instance"), (stack_id, "google_sql_database_instance", key))
            for st, k, db in s.all_resources("google_sql_database")
        ),
        f"PGDATABASE = {s.show(caller.stack_id, database)}, a database of {instance.get('name')}",
    )


def _private_services_range(s: Synth, c: Chain, stack_id: str, ip: Json) -> tuple[Ref, Net] | None:
    # cloud.google.com/vpc/docs/configure-private-services-access: the instance's private IP
    # comes from the ranges reserved for the service networking connection.
    network = s.ref(stack_id, ip.get("private_network"))
    if network is None:
        c.fail(f"private_network {ip.get('private_network')} is not resolvable")
        return None
    if network.type == "google_service_networking_connection":
        connection = s.config(network)
        ranges = [s.ref(network.stack, r) for r in connection.get("reserved_peering_ranges") or ()]
        network = s.ref(network.stack, connection.get("network"))
    else:
        ranges = []
    addresses = [s.config(r) for r in ranges if r is not None and r.type == "google_compute_global_address"]
    if not c.check(
        network is not None and bool(addresses), "the instance's network has a Private Services Access range"
    ):
        return None
    assert network is not None
    address = addresses[0]
    psa_range = net(f"{address['address']}/{address['prefix_length']}")
    c.ok(f"private IP from Private Services Access range {address.get('name')} ({psa_range}) in {s.name_of(network)}")
    return network, psa_range


def _iam_login(s: Synth, c: Chain, caller: Caller, stack_id: str, key: str, instance: Json) -> None:
    # cloud.google.com/sql/docs/postgres/iam-authentication and /add-manage-iam-users: the flag
    # cloudsql.iam_authentication on, a CLOUD_IAM_SERVICE_ACCOUNT user named as the account's
    # email without .gserviceaccount.com, and roles/cloudsql.instanceUser for the account.
    flags = {f.get("name"): f.get("value") for f in (instance.get("settings") or {}).get("database_flags") or ()}
    c.check(
        flags.get("cloudsql.iam_authentication") == "on", "DATABASE_AUTH = iam: flag cloudsql.iam_authentication on"
    )
    who = caller.identity
    users = [
        s.principal(st, user.get("name"))
        for st, _, user in s.all_resources("google_sql_user")
        if user.get("type") == "CLOUD_IAM_SERVICE_ACCOUNT"
        and s.refers_to(st, user.get("instance"), (stack_id, "google_sql_database_instance", key))
        and ".gserviceaccount.com" in user.get("name", "")
    ]
    c.check(who in users, f"IAM database user for {who} (type CLOUD_IAM_SERVICE_ACCOUNT): {', '.join(users) or 'none'}")
    pguser = caller.env.get("PGUSER", "")
    c.check(
        s.principal(caller.stack_id, pguser) == who and ".gserviceaccount.com" in pguser,
        f"PGUSER is {who}'s email without .gserviceaccount.com",
    )
    c.check(who in project_holders(s, "roles/cloudsql.instanceUser"), f"{who} holds roles/cloudsql.instanceUser")


def orchestrator_to_vertex(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("orchestrator -> Vertex AI")
    orchestrator = run_service(s, "orchestrator")
    if not c.present(orchestrator, "the orchestrator service exists"):
        return c.verdict()
    backends = orchestrator_json(c, orchestrator, "BACKENDS")
    if backends is None:
        return c.verdict()
    vertex = [b for b in backends.values() if (b or {}).get("kind") == "vertex"]
    if not c.check(bool(vertex), "BACKENDS: a vertex backend"):
        return c.verdict()
    hostname = f"{vertex[0].get('location')}-aiplatform.googleapis.com."
    vpc = orchestrator.template.get("vpc_access")
    attached = attachment(s, c, orchestrator) if vpc else None
    if vpc and attached is None:
        return c.verdict()
    dns = private_dns(s, attached.network, hostname) if attached else None
    destinations = list(ipaddress.collapse_addresses(host(a) for a in dns[1])) if dns and dns[1] else [ANYWHERE]
    # Google APIs answer on public addresses unless a private zone maps them to the VIPs;
    # PRIVATE_RANGES_ONLY sends public addresses straight out of Cloud Run, ALL_TRAFFIC into the
    # VPC (cloud.google.com/run/docs/configuring/networking-best-practices).
    if attached is None or not all(attached.routes_into_vpc(d) for d in destinations):
        c.ok(
            f"{hostname} ({'the VIPs' if dns and dns[1] else 'public Google addresses'}) is reached directly from Cloud Run,"
            f" outside the VPC" + (f" (egress {attached.egress})" if attached else "")
        )
    else:
        c.ok(f"{orchestrator.name}: {attached.describe_routing(destinations[0])}")
        # cloud.google.com/vpc/docs/private-google-access: from the VPC, Google APIs need
        # Private Google Access on the subnet and an egress rule allowing them.
        c.check(
            attached.subnet.get("private_ip_google_access") is True,
            f"subnet {attached.subnet_name} has Private Google Access",
        )
        rules = firewall_rules(s, attached.network)
        for destination in destinations:
            _firewall(c, rules, Packet("EGRESS", attached.source, destination, HTTPS, target_tags=attached.tags))
    # cloud.google.com/vertex-ai/generative-ai/docs/access-control: prompt requests need
    # aiplatform.endpoints.predict, which roles/aiplatform.user grants.
    who = identity(s, orchestrator)
    c.check(who in project_holders(s, "roles/aiplatform.user"), f"{who} holds roles/aiplatform.user on the project")
    return c.verdict()


def nodes_to_internet(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("GKE nodes -> internet (NAT)")
    # The models' cluster; the workers' subnet has no NAT by design (stacks/network.py).
    clusters = [(s.stack_id("cluster"), k, v) for k, v in s.resources("cluster", "google_container_cluster").items()]
    if not c.check(bool(clusters), f"a GKE cluster in {s.stack_id('cluster')}"):
        return c.verdict()
    stack_id, _, cluster = clusters[0]
    private = ((cluster.get("private_cluster_config") or {}).get("enable_private_nodes")) is True
    subnet_ref = s.ref(stack_id, cluster.get("subnetwork"))
    network_ref = s.ref(stack_id, cluster.get("network"))
    if not c.check(subnet_ref is not None and network_ref is not None, "the cluster's VPC and subnet resolve"):
        return c.verdict()
    assert subnet_ref is not None and network_ref is not None
    subnet = s.config(subnet_ref)
    primary = net(subnet["ip_cidr_range"])
    secondary = {r.get("range_name"): net(r["ip_cidr_range"]) for r in subnet.get("secondary_ip_range") or ()}
    pods_range = secondary.get((cluster.get("ip_allocation_policy") or {}).get("cluster_secondary_range_name"))
    # cloud.google.com/nat/docs/overview: Cloud NAT serves the subnets (and ranges) a gateway
    # lists, on a Cloud Router in the same VPC and region; it does not bypass egress firewall rules.
    if private:
        covered = _nat_covers(s, network_ref, subnet_ref, subnet)
        c.check(
            covered is not None,
            f"{cluster.get('name')} has private nodes: Cloud NAT covers subnet {subnet.get('name')}"
            f" ({primary})" + (f": {covered}" if covered else ""),
        )
    else:
        c.ok(f"{cluster.get('name')}: nodes have external addresses, no NAT needed")
    rules = firewall_rules(s, network_ref)
    for source in filter(None, (primary, pods_range)):
        _firewall(c, rules, Packet("EGRESS", source, ANYWHERE, HTTPS))
    return c.verdict()


def _nat_covers(s: Synth, network: Ref, subnet_ref: Ref, subnet: Json) -> str | None:
    for stack_id, _, nat in s.all_resources("google_compute_router_nat"):
        router_ref = s.ref(stack_id, nat.get("router"))
        router = s.config(router_ref) if router_ref else {}
        if not router_ref or not router or not s.refers_to(router_ref.stack, router.get("network"), network.target):
            continue
        if nat.get("region", router.get("region")) != subnet.get("region"):
            continue
        mode = nat.get("source_subnetwork_ip_ranges_to_nat")
        if mode in ("ALL_SUBNETWORKS_ALL_IP_RANGES", "ALL_SUBNETWORKS_ALL_PRIMARY_IP_RANGES"):
            return f"{nat.get('name')} ({mode})"
        for entry in nat.get("subnetwork") or ():
            ranges = entry.get("source_ip_ranges_to_nat") or ()
            if s.refers_to(stack_id, entry.get("name"), subnet_ref.target) and (
                "ALL_IP_RANGES" in ranges or "PRIMARY_IP_RANGE" in ranges
            ):
                return f"{nat.get('name')} (LIST_OF_SUBNETWORKS, {', '.join(ranges)})"
    return None


def prometheus_to_metrics(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("Managed Prometheus -> vLLM metrics")
    clusters = [(s.stack_id("cluster"), k, v) for k, v in s.resources("cluster", "google_container_cluster").items()]
    if not c.check(bool(clusters), "a GKE cluster"):
        return c.verdict()
    cluster = clusters[0][2]
    autopilot = cluster.get("enable_autopilot") is True
    managed = ((cluster.get("monitoring_config") or {}).get("managed_prometheus") or {}).get("enabled")
    # Managed collection is on by default in Autopilot (cloud.google.com/stackdriver/docs/managed-prometheus/setup-managed).
    c.check(
        managed is not False and (managed or autopilot),
        f"{cluster.get('name')}: Managed Service for Prometheus collection on",
    )
    # The managed collectors run in gke-gmp-system on Autopilot and in gmp-system on Standard
    # (cloud.google.com/stackdriver/docs/managed-prometheus/setup-managed, /troubleshooting), as
    # ordinary pods, not on the host network (github.com/GoogleCloudPlatform/prometheus-engine,
    # manifests/operator.yaml, DaemonSet collector), so NetworkPolicy sees their namespace.
    namespace = "gke-gmp-system" if autopilot else "gmp-system"
    monitors = [
        m["manifest"]
        for _, _, m in s.all_resources("kubernetes_manifest")
        if (m.get("manifest") or {}).get("kind") == "PodMonitoring"
    ]
    if not c.check(bool(monitors), "a PodMonitoring for the model server"):
        return c.verdict()
    monitor = monitors[0]
    inference_id = s.stack_id("inference")
    monitor_namespace = str(s.value(inference_id, (monitor.get("metadata") or {}).get("namespace", "default")))
    selector = ((monitor.get("spec") or {}).get("selector") or {}).get("matchLabels")
    pods = [w for w in workloads(s) if w.namespace == monitor_namespace and labels_select(selector, w.labels)]
    if not c.check(bool(pods), f"PodMonitoring {monitor.get('metadata', {}).get('name')} selects the pods {selector}"):
        return c.verdict()
    pod = pods[0]
    # Managed collection scrapes only targets on the collector's own node (setup-managed), so the
    # path stays on the node: no VPC firewall rule applies, the NetworkPolicy does.
    c.ok("the collector DaemonSet scrapes the pods on its own node: no VPC firewall rule on the path")
    for endpoint in (monitor.get("spec") or {}).get("endpoints") or ():
        # PodMonitoring endpoints name the port by name or number (ScrapeEndpoint.port,
        # cloud.google.com/stackdriver/docs/managed-prometheus/api#scrapeendpoint).
        port = pod.port(endpoint.get("port"))
        if not c.present(port, f"endpoint port {endpoint.get('port')!r} -> container port {port}"):
            continue
        admitted, why = network_policy_admits(s, pod, port, namespace_labels={"kubernetes.io/metadata.name": namespace})
        # Every namespace carries kubernetes.io/metadata.name = its name
        # (kubernetes.io/docs/reference/labels-annotations-taints/#kubernetes-io-metadata-name).
        c.check(admitted, f"collectors in {namespace}: {why}")
    return c.verdict()


# ------------------------------------------------------------------------------------------
# Running every edge


@dataclass(frozen=True)
class EnvironmentFacts:
    """What the environment file says and the JSON cannot: where and which model is self-hosted."""

    name: str
    placement: str  # "gke" or "cloud_run"
    self_hosted_model: str
    workers: bool = False  # [workers] enabled: the batch workers tier exists
    redis: bool = False  # [redis] enabled: the gateway's rate limit is kept in Memorystore

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any]) -> EnvironmentFacts:
        """From an environments/<env>.toml as parsed by tomllib (hybrid/config validates it)."""
        inference = raw.get("inference") or {}
        placement = inference.get("placement", "gke")  # InferenceSettings' default
        workers = bool((raw.get("workers") or {}).get("enabled", False))  # WorkersSettings' default
        redis = bool((raw.get("redis") or {}).get("enabled", False))  # RedisSettings' default
        return cls(raw["name"], placement, (inference.get(placement) or {}).get("model", ""), workers, redis)


EdgeCheck = Callable[[Synth, EnvironmentFacts], Verdict]
# (edge, check, placements it applies to)
EDGES: tuple[tuple[str, EdgeCheck, tuple[str, ...]], ...] = (
    ("browser -> frontend", browser_to_frontend, ("gke", "cloud_run")),
    ("browser -> gateway", browser_to_gateway, ("gke", "cloud_run")),
    ("gateway -> orchestrator", gateway_to_orchestrator, ("gke", "cloud_run")),
    ("orchestrator -> inference", orchestrator_to_inference, ("gke", "cloud_run")),
    ("orchestrator -> Cloud SQL", orchestrator_to_database, ("gke", "cloud_run")),
    ("orchestrator -> Vertex AI", orchestrator_to_vertex, ("gke", "cloud_run")),
    ("GKE nodes -> internet (NAT)", nodes_to_internet, ("gke",)),
    ("Managed Prometheus -> vLLM metrics", prometheus_to_metrics, ("gke",)),
)
# The workers tier's edges, where it is enabled.
WORKER_EDGES: tuple[tuple[str, EdgeCheck], ...] = (
    ("worker -> inference", worker_to_inference),
    ("worker -> Cloud SQL", worker_to_database),
)


def evaluate(stacks: Mapping[str, Json], facts: EnvironmentFacts) -> list[Verdict]:
    """Every edge that applies to the environment, each with its verdict and reasons.

    ``stacks`` maps stack ids (``<env>-<layer>``) to their parsed cdk.tf.json; stacks of other
    environments may be present and are ignored."""
    s, verdicts = Synth(facts.name, stacks), []
    edges = [(edge, check) for edge, check, placements in EDGES if facts.placement in placements]
    edges += list(WORKER_EDGES) if facts.workers else []
    edges += [("gateway -> Memorystore (rate limit)", gateway_to_redis)] if facts.redis else []
    for edge, check in edges:
        try:
            verdicts.append(check(s, facts))
        except Unresolved as err:
            verdicts.append(Verdict(edge, (Step(False, f"cannot evaluate: {err}"),)))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            why = f"cannot evaluate: malformed synth ({type(err).__name__}: {err})"
            verdicts.append(Verdict(edge, (Step(False, why),)))
    return verdicts
