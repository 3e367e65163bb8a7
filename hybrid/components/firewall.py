"""VPC firewall rules declared as data: one ``Rule`` per allowed or denied flow, all logged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cdktf_cdktf_provider_google.compute_firewall import (
    ComputeFirewall,
    ComputeFirewallAllow,
    ComputeFirewallDeny,
    ComputeFirewallLogConfig,
)
from constructs import Construct

from hybrid.topology import Flow, Peer

# The lowest priority a rule can have (cloud.google.com/firewall/docs/firewalls#priority_order_for_firewall_rules);
# the default-deny rules sit one above the implied rules at 65535.
DEFAULT_DENY_PRIORITY = 65534
ALLOW_PRIORITY = 1000


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    direction: Literal["INGRESS", "EGRESS"]
    action: Literal["allow", "deny"]
    source_ranges: tuple[str, ...] = ()
    destination_ranges: tuple[str, ...] = ()
    target_tags: tuple[str, ...] = ()
    protocol: str = "all"
    ports: tuple[str, ...] = ()
    priority: int = ALLOW_PRIORITY


def flow_rules(
    flow: Flow,
    *,
    name: Callable[[str], str],
    ranges: Callable[[Peer], tuple[str, ...]],
    tag: Callable[[str], str],
    port: int | None,
) -> list[Rule]:
    """``flow``'s egress rule, which matches its source by network tags where it has them, and
    its ingress rule; ``name`` turns a rule's key into its name, ``ranges`` a peer's range
    references into CIDRs and ``tag`` a service into its network tag."""
    source = flow.source

    def allow(
        key: str,
        direction: Literal["INGRESS", "EGRESS"],
        why: str,
        source_ranges: tuple[str, ...] = (),
        target_tags: tuple[str, ...] = (),
    ) -> Rule:
        return Rule(
            name=name(key),
            description=why,
            direction=direction,
            action="allow",
            destination_ranges=ranges(flow.destination),
            protocol="tcp" if port else "all",
            ports=(str(port),) if port else (),
            source_ranges=source_ranges,
            target_tags=target_tags,
        )

    rules = []
    if flow.egress_key:
        tags = tuple(dict.fromkeys(map(tag, source.tags)))  # services sharing a connector share its tag
        # A tagged source is matched by its tags alone: its range is the whole Cloud Run subnet's.
        rules.append(allow(flow.egress_key, "EGRESS", flow.why, () if tags else ranges(source), tags))
    if flow.ingress_key:
        rules.append(allow(flow.ingress_key, "INGRESS", flow.why_ingress or flow.why, source_ranges=ranges(source)))
    return rules


@dataclass(frozen=True)
class FirewallProps:
    network: str
    rules: tuple[Rule, ...]


class Firewall(Construct):
    """The network's firewall: every rule logged with full metadata, so a denied flow is visible."""

    def __init__(self, scope: Construct, id_: str, props: FirewallProps) -> None:
        super().__init__(scope, id_)
        self.rules = {
            rule.name: ComputeFirewall(
                self,
                rule.name,
                name=rule.name,
                description=rule.description,
                network=props.network,
                direction=rule.direction,
                priority=rule.priority,
                source_ranges=list(rule.source_ranges) or None,
                destination_ranges=list(rule.destination_ranges) or None,
                target_tags=list(rule.target_tags) or None,
                allow=[_allow(rule)] if rule.action == "allow" else None,
                deny=[_deny(rule)] if rule.action == "deny" else None,
                log_config=ComputeFirewallLogConfig(metadata="INCLUDE_ALL_METADATA"),
            )
            for rule in props.rules
        }


def _allow(rule: Rule) -> ComputeFirewallAllow:
    return ComputeFirewallAllow(protocol=rule.protocol, ports=list(rule.ports) or None)


def _deny(rule: Rule) -> ComputeFirewallDeny:
    return ComputeFirewallDeny(protocol=rule.protocol, ports=list(rule.ports) or None)
