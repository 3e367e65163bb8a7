"""Model name -> the backends to try, in order."""

from __future__ import annotations

from services.modelcalls.settings import Route


def backends_for(model: str, routes: list[Route]) -> list[str]:
    for route in routes:
        if route.match == model or (route.match.endswith("*") and model.startswith(route.match[:-1])):
            return route.backends
    return []
