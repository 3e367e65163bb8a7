"""How a source inside the VPC reaches Google APIs (pubsub, storage, aiplatform, run.app).

cloud.google.com/vpc/docs/private-google-access: sources with internal addresses only reach
Google APIs when their subnet has Private Google Access, through a route to the default
internet gateway (which a VPC has unless its default routes are deleted), and past the VPC's
egress firewall rules. Without a private zone the API names resolve to Google's public
addresses, which the check cannot list, so the firewall must allow all of 0.0.0.0/0 on 443."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from analysis.reachability.core import ANYWHERE, HTTPS, Chain, Json, Net, host
from analysis.reachability.dns import private_dns
from analysis.reachability.firewall import Packet, allows, firewall_rules
from analysis.reachability.synth import Ref, Synth


def api_addresses(s: Synth, network: Ref, hostname: str) -> tuple[list[Net], str]:
    """(destinations, what they are): the private zone's answer for ``hostname``, or anywhere."""
    dns = private_dns(s, network, hostname)
    if dns and dns[1]:
        return list(ipaddress.collapse_addresses(host(a) for a in dns[1])), f"zone {dns[0]}: {', '.join(dns[1])}"
    return [ANYWHERE], "public Google addresses"


def from_subnet(
    s: Synth,
    c: Chain,
    network: Ref,
    subnet: Json,
    sources: Iterable[Net],
    destinations: Iterable[Net],
    tags: frozenset[str] = frozenset(),
) -> None:
    """Private Google Access on ``subnet``, a default route, and egress on 443 from every source."""
    c.check(
        subnet.get("private_ip_google_access") is True,
        f"subnet {subnet.get('name')} ({subnet.get('ip_cidr_range')}) has Private Google Access",
    )
    # cloud.google.com/vpc/docs/routes#default-route: created with the network unless
    # delete_default_routes_on_create (registry.terraform.io/providers/hashicorp/google/latest/docs/resources/compute_network).
    c.check(
        s.config(network).get("delete_default_routes_on_create") is not True,
        f"{s.name_of(network)} keeps its default route to the internet gateway, which Private Google Access uses",
    )
    rules = firewall_rules(s, network)
    for source in sources:
        for destination in destinations:
            allows(c, rules, Packet("EGRESS", source, destination, HTTPS, target_tags=tags))
