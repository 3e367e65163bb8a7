"""Private Cloud DNS zones: what a name resolves to inside a VPC."""

from __future__ import annotations

from analysis.reachability.synth import Ref, Synth


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
