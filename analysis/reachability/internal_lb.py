"""Connector mode's call to an internal Cloud Run service: through a regional internal
Application Load Balancer's private address, which the caller's connector carries into the VPC
(docs/network-egress.md)."""

from __future__ import annotations

import re

from analysis.reachability.cloudrun import RunService, attachment, may_invoke, service_target
from analysis.reachability.core import RFC1918, Chain, Json, host, within
from analysis.reachability.firewall import Packet, allows, firewall_rules
from analysis.reachability.synth import Ref, Synth

# Envoy-based regional load balancers (cloud.google.com/load-balancing/docs/l7-internal/setting-up-l7-internal-serverless).
INTERNAL_MANAGED = "INTERNAL_MANAGED"
# The ingress settings that admit an internal Application Load Balancer's requests: "Internal"
# admits them, "Internal and Cloud Load Balancing" too (cloud.google.com/run/docs/securing/ingress#settings).
ADMITS_INTERNAL_LB = ("INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_ALL")
_URL = re.compile(r"(https?)://([^/:]+)(?::(\d+))?(/.*)?")


def through_internal_lb(s: Synth, c: Chain, caller: RunService, callee: RunService, url: object) -> None:
    """``caller`` dials ``url``: never the callee's run.app URL, but an internal load balancer's
    private address whose serverless NEG is ``callee``, reached through the caller's connector."""
    services_id = s.stack_id("services")
    shown = s.show(services_id, url)
    # A connector's PRIVATE_RANGES_ONLY carries RFC 1918 ranges only: run.app, even resolved to
    # private.googleapis.com, leaves Cloud Run directly and is refused by internal ingress
    # (cloud.google.com/vpc/docs/serverless-vpc-access).
    direct = s.refers_to(services_id, url, service_target(s, callee), "uri") or "run.app" in str(url)
    if not c.check(not direct, f"{caller.name}: {shown}: connector mode never calls run.app directly"):
        return
    rules = [r for r in s.refs(services_id, url) if r.type == "google_compute_forwarding_rule"]
    if not c.check(bool(rules), f"{caller.name}: {shown} is a forwarding rule's address"):
        return
    rule_ref = rules[0]
    rule = s.config(rule_ref)
    match = _URL.fullmatch(s.render(services_id, str(url)))
    address = match[2] if match else "?"
    if not c.check(
        rule.get("load_balancing_scheme") == INTERNAL_MANAGED and match is not None and address.count(".") == 3,
        f"forwarding rule {rule.get('name')}: scheme {rule.get('load_balancing_scheme')}, address {address}",
    ):
        return
    assert match is not None
    destination = host(address)
    port = int(match[3] or (443 if match[1] == "https" else 80))
    c.check(within(destination, RFC1918), f"{address} is an RFC 1918 address, which a connector carries")
    c.check(str(port) in str(rule.get("port_range", "")).split("-"), f"it listens on {rule.get('port_range')}")
    if not _serves(s, c, rule_ref, rule, callee, https=match[1] == "https"):
        return
    _proxy_only_subnet(s, c, rule_ref, rule)
    c.check(
        callee.ingress in ADMITS_INTERNAL_LB,
        f"{callee.name}: ingress {callee.ingress} admits an internal Application Load Balancer",
    )
    attached = attachment(s, c, caller)
    if attached is None:
        return
    c.check(attached.connector, f"{caller.name} enters the VPC through {attached.kind}")
    if not c.check(attached.routes_into_vpc(destination), f"{caller.name}: {attached.describe_routing(destination)}"):
        return
    network = s.ref(rule_ref.stack, rule.get("network"))
    c.check(
        network is not None and network.target == attached.network.target,
        f"the forwarding rule is in {caller.name}'s VPC {s.name_of(attached.network)}",
    )
    # The frontend is Google's Envoy, not a VM: the caller's egress rule is the only one on the way.
    allows(
        c,
        firewall_rules(s, attached.network),
        Packet("EGRESS", attached.source, destination, port, target_tags=attached.tags),
    )
    may_invoke(s, c, caller, callee)


def _serves(s: Synth, c: Chain, rule_ref: Ref, rule: Json, callee: RunService, *, https: bool) -> bool:
    """The forwarding rule -> target proxy -> URL map -> backend service -> serverless NEG of ``callee``."""
    proxy_ref = s.ref(rule_ref.stack, rule.get("target"))
    kind = "google_compute_region_target_https_proxy" if https else "google_compute_region_target_http_proxy"
    if not c.check(
        proxy_ref is not None and proxy_ref.type == kind, f"its target is a regional {kind.rsplit('_', 2)[-2]} proxy"
    ):
        return False
    assert proxy_ref is not None
    map_ref = s.ref(proxy_ref.stack, s.config(proxy_ref).get("url_map"))
    backend_ref = s.ref(map_ref.stack, s.config(map_ref).get("default_service")) if map_ref else None
    if not c.check(
        backend_ref is not None and backend_ref.type == "google_compute_region_backend_service",
        "its URL map's default service is a regional backend service",
    ):
        return False
    assert backend_ref is not None
    backend = s.config(backend_ref)
    c.check(
        backend.get("load_balancing_scheme") == INTERNAL_MANAGED,
        f"backend service {backend.get('name')}: scheme {backend.get('load_balancing_scheme')}",
    )
    target = service_target(s, callee)
    for group in backend.get("backend") or ():
        neg_ref = s.ref(backend_ref.stack, group.get("group"))
        neg = s.config(neg_ref) if neg_ref and neg_ref.type == "google_compute_region_network_endpoint_group" else {}
        service = (neg.get("cloud_run") or {}).get("service")
        if neg.get("network_endpoint_type") == "SERVERLESS" and s.refers_to(backend_ref.stack, service, target):
            c.ok(f"its serverless NEG {neg.get('name')} is {callee.name}")
            return True
    return c.fail(f"no serverless NEG of backend service {backend.get('name')} is {callee.name}")


def _proxy_only_subnet(s: Synth, c: Chain, rule_ref: Ref, rule: Json) -> None:
    """An internal Application Load Balancer's proxies need an active proxy-only subnet in its
    region and VPC (cloud.google.com/load-balancing/docs/proxy-only-subnets)."""
    network = s.ref(rule_ref.stack, rule.get("network"))
    found = [
        config.get("name")
        for stack_id, _, config in s.all_resources("google_compute_subnetwork")
        if config.get("purpose") == "REGIONAL_MANAGED_PROXY"
        and config.get("role", "ACTIVE") == "ACTIVE"
        and config.get("region") == rule.get("region")
        and network is not None
        and s.refers_to(stack_id, config.get("network"), network.target)
    ]
    c.check(bool(found), f"an active proxy-only subnet in {rule.get('region')}: {', '.join(map(str, found)) or 'none'}")
