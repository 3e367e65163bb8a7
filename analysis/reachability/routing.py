"""The orchestrator's and workers' model routing (services/modelcalls/routing.py), read from their env."""

from __future__ import annotations

from analysis.reachability.core import Chain, Json

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


def check_spill_route(c: Chain, routes: list[Json], model: str, backend: str) -> None:
    """The route of ``model`` spills to ``backend`` ([inference] spill_to)."""
    route = route_for(model, routes)
    if route is None:
        c.fail(f"ROUTES: no route matches {model}")
        return
    c.check(
        route.get("spill_to") == backend,
        f"ROUTES: {model}'s route {route.get('match')!r} spills to {route.get('spill_to')!r}"
        + ("" if route.get("spill_to") == backend else f", not the spill target {backend!r}"),
    )
