"""Typed settings for the edge: the global external Application Load Balancer in front of the
public services, its Cloud Armor policy, and the regions the stateless tier runs in."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import model_validator

from hybrid.config.regions import Region
from hybrid.config.validation import Settings, between, invalid, matching

# A DNS name the managed certificate can be issued for: lowercase labels, at least two of them.
Domain = Annotated[
    str,
    matching(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", "a domain name like chat.example.com"),
]


class ArmorSettings(Settings):
    """The Cloud Armor policy on every public backend (docs/edge.md, "Cloud Armor")."""

    # Requests a minute one client IP may send before it is banned (browsers behind one NAT share
    # an IP: keep this well above one user's page loads).
    ip_ban_threshold_per_minute: Annotated[int, between(10, 100_000)] = 1200
    # How long a banned IP stays banned (cloud.google.com/armor/docs/rate-limiting-overview).
    ip_ban_seconds: Annotated[int, between(60, 86_400)] = 600
    # Requests a minute one Authorization header value may send: a coarse flood stop, validated at
    # synth to lie above what the gateway's per-user limit lets one user send in a minute.
    authorization_throttle_per_minute: Annotated[int, between(10, 100_000)] = 300
    # The preconfigured WAF rules' sensitivity: 1 enables only high-confidence signatures
    # (cloud.google.com/armor/docs/rule-tuning#choose_a_sensitivity_level); chat prompts are free text.
    waf_sensitivity: Literal[1, 2, 3, 4] = 1


class EdgeSettings(Settings):
    enabled: bool = False
    # The name the managed certificate is issued for and the browser reaches the services at.
    domain: Domain | None = None
    # Further regions for the frontend, the gateway and the orchestrator, beside the
    # environment's own `region` (which always comes first).
    regions: tuple[Region, ...] = ()
    armor: ArmorSettings = ArmorSettings()

    @property
    def origin(self) -> str | None:
        """The origin the browser reaches the public services at through the edge; None without one."""
        return f"https://{self.domain}" if self.enabled else None

    @model_validator(mode="after")
    def _domain_when_enabled(self) -> EdgeSettings:
        if self.enabled and self.domain is None:
            raise invalid("domain", "must be set when edge.enabled is true: the managed certificate is issued for it")
        if len(set(self.regions)) != len(self.regions):
            raise invalid("regions", "must not name a region twice")
        return self
