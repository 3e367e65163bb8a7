"""VPC firewall rules: which rule decides a packet."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from analysis.reachability.core import ANYWHERE, Chain, Json, Net, net, overlapping, within
from analysis.reachability.synth import Ref, Synth

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


def allows(c: Chain, rules: list[FirewallRule], packet: Packet) -> bool:
    allowed, why = firewall_decides(rules, packet)
    return c.check(allowed, why)
