"""Model name -> the route that serves it, and the first answer of its backends."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.modelcalls.backends import BackendUnavailable
from services.modelcalls.health import Attempt, Router
from services.modelcalls.settings import Route
from services.servicekit import logs

log = logging.getLogger("modelcalls.routing")


def route_for(model: str, routes: list[Route]) -> Route | None:
    for route in routes:
        if route.match == model or (route.match.endswith("*") and model.startswith(route.match[:-1])):
            return route
    return None


def backends_for(model: str, routes: list[Route]) -> list[str]:
    route = route_for(model, routes)
    return route.backends if route else []


@dataclass(frozen=True)
class Opened:
    """A backend's answer that has begun: its headers, and a stream's first bytes (``head``),
    to be passed on before the rest of its body."""

    response: aiohttp.ClientResponse
    attempt: Attempt
    head: bytes


async def first_answer(
    client: aiohttp.ClientSession, router: Router, attempts: list[Attempt], body: dict[str, Any]
) -> Opened | None:
    """The first attempt's answer that has begun (Backend.open). Trying the next is safe only
    here, before a byte is passed on: once one is, the answer is this backend's, whole or
    broken, and the request is never sent again."""
    for attempt in attempts:
        if not router.admits(attempt):
            continue
        try:
            with router.sending(attempt):
                response, head = await attempt.backend.open(client, body, attempt.first_byte_timeout, attempt.model)
        except BackendUnavailable as err:
            router.failed(attempt, str(err))
            logs.event(log, "backend unavailable", logging.WARNING, error=str(err))
            continue
        router.answered(attempt)
        return Opened(response, attempt, head)
    return None
