"""GET /v1/models: the models the orchestrator's routes serve, for an authenticated caller within
the reads' rate limit (deps.Reader: the chat page reads them at every sign-in)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from services.gateway.upstream import ReadUpstream, relayed

router = APIRouter()


@router.get("/v1/models", responses={401: {}, 429: {}, 502: {}})
async def list_models(orchestrator: ReadUpstream) -> Response:
    return relayed(await orchestrator.open("GET", "/v1/models"))
