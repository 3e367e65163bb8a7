"""VPC firewall rules declared as data: one ``Rule`` per allowed or denied flow, all logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cdktf_cdktf_provider_google.compute_firewall import (
    ComputeFirewall,
    ComputeFirewallAllow,
    ComputeFirewallDeny,
    ComputeFirewallLogConfig,
)
from constructs import Construct

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
