"""The checker's shared pieces on their own: which firewall rule decides a packet
(analysis/reachability/firewall.py) and which route a model takes (the orchestrator's routing)."""

from __future__ import annotations

from typing import Any

import pytest

from analysis.reachability import (
    FirewallRule,
    Packet,
    firewall_decides,
    net,
    route_for,
)
from iac import Json
from services.modelcalls.routing import backends_for
from services.modelcalls.settings import Route


def rule(name: str, priority: int, action: str, **fields: Any) -> FirewallRule:
    return FirewallRule(name, fields.pop("direction", "EGRESS"), priority, action, (("tcp", ("5432",)),), **fields)


def test_firewall_lower_priority_number_decides_first() -> None:
    packet = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    allow, deny = rule("allow", 1000, "allow"), rule("deny", 1001, "deny")
    assert firewall_decides([deny, allow], packet)[0] is True
    assert firewall_decides([rule("allow", 1001, "allow"), rule("deny", 1000, "deny")], packet)[0] is False


def test_firewall_deny_wins_a_tie() -> None:
    packet = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    allowed, why = firewall_decides([rule("allow", 1000, "allow"), rule("deny", 1000, "deny")], packet)
    assert (allowed, why.endswith("denied by deny (priority 1000)")) == (False, True)


def test_firewall_allow_must_cover_every_address_and_deny_any() -> None:
    packet = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    half = rule("allow-half", 1000, "allow", destination_ranges=(net("10.32.0.0/17"),))
    assert firewall_decides([half], packet)[0] is True  # the implied allow-all egress decides
    deny_half = rule("deny-half", 900, "deny", destination_ranges=(net("10.32.128.0/17"),))
    assert firewall_decides([half, deny_half], packet)[0] is False


def test_firewall_targets_by_tag_and_ingress_defaults_to_deny() -> None:
    tagged = rule("allow-tagged", 1000, "allow", target_tags=frozenset({"dev-cloud-run"}))
    deny_all = rule("deny-all", 65534, "deny")
    untagged = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    assert firewall_decides([tagged, deny_all], untagged)[0] is False
    tagged_packet = Packet(
        "EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432, target_tags=frozenset({"dev-cloud-run"})
    )
    assert firewall_decides([tagged, deny_all], tagged_packet)[0] is True
    ingress = Packet("INGRESS", net("10.8.0.0/24"), net("10.10.15.250/32"), 5432)
    assert firewall_decides([], ingress) == (False, f"{ingress}: denied by implied-deny-ingress (priority 65535)")


@pytest.mark.parametrize(
    "model", ["google/gemma-3-4b-it", "google/gemini-2.5-flash", "mistralai/Mistral-7B-Instruct-v0.3", "x"]
)
@pytest.mark.parametrize(
    "routes",
    [
        [{"match": "google/gemma-3-4b-it", "backends": ["self-hosted"]}, {"match": "google/*", "backends": ["vertex"]}],
        [{"match": "google/*", "backends": ["vertex"]}, {"match": "google/gemma-3-4b-it", "backends": ["self-hosted"]}],
        [{"match": "*", "backends": ["self-hosted"]}],
    ],
)
def test_route_matching_is_the_orchestrators(model: str, routes: list[Json]) -> None:
    found = route_for(model, routes)
    assert (found["backends"] if found else []) == backends_for(model, [Route(**r) for r in routes])
