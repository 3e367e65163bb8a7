"""GET /v1/usage: the caller's own tokens today against the daily quota (the orchestrator reads
them from the ledger). The user is the token's subject; no parameter names another. Within the
reads' rate limit, not the model calls' (deps.Reader): the chat page reads it after every answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from services.gateway.upstream import ReadUpstream, relayed

router = APIRouter()


@router.get("/v1/usage", responses={401: {}, 429: {}, 502: {}, 503: {}})
async def own_usage(orchestrator: ReadUpstream) -> Response:
    return relayed(await orchestrator.open("GET", "/v1/usage"))
