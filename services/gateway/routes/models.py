"""GET /v1/models: the models the orchestrator's routes serve, for an admitted caller."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from services.gateway.upstream import Upstream, relayed

router = APIRouter()


@router.get("/v1/models", responses={401: {}, 429: {}, 502: {}})
async def list_models(orchestrator: Upstream) -> Response:
    return relayed(await orchestrator.open("GET", "/v1/models"))
