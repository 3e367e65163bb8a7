"""Typed settings for the edge: the global external Application Load Balancer in front of the
public services, its Cloud Armor policy, and the regions the stateless tier runs in."""

from __future__ import annotations

from typing import Annotated

from pydantic import model_validator

from hybrid.config.regions import Region
from hybrid.config.validation import Settings, invalid, matching

# A DNS name the managed certificate can be issued for: lowercase labels, at least two of them.
Domain = Annotated[
    str,
    matching(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", "a domain name like chat.example.com"),
]


class EdgeSettings(Settings):
    enabled: bool = False
    # The name the managed certificate is issued for and the browser reaches the services at.
    domain: Domain | None = None
    # Further regions for the frontend, the gateway and the orchestrator, beside the
    # environment's own `region` (which always comes first).
    regions: tuple[Region, ...] = ()

    @model_validator(mode="after")
    def _domain_when_enabled(self) -> EdgeSettings:
        if self.enabled and self.domain is None:
            raise invalid("domain", "must be set when edge.enabled is true: the managed certificate is issued for it")
        if len(set(self.regions)) != len(self.regions):
            raise invalid("regions", "must not name a region twice")
        return self
