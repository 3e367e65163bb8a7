"""OpenAI's Batch API, its batches: created from an uploaded file, listed, read and cancelled."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from services.gateway.batch_input import BATCH_ID, BatchCreateRequest
from services.gateway.deps import JsonBody, User, not_found
from services.gateway.openapi import read_by_hand
from services.gateway.upstream import Upstream, relayed

router = APIRouter()


async def known_batch_id(batch_id: str, _: User) -> str:
    """An admitted caller's batch id."""
    if not re.fullmatch(BATCH_ID, batch_id):
        raise not_found()
    return batch_id


BatchId = Annotated[str, Depends(known_batch_id)]


@router.post(
    "/v1/batches",
    responses={400: {}, 401: {}, 404: {}, 413: {}, 429: {}, 502: {}},
    openapi_extra=read_by_hand(BatchCreateRequest),
)
async def create_batch(
    batch: Annotated[BatchCreateRequest, Depends(JsonBody(BatchCreateRequest))], orchestrator: Upstream
) -> Response:
    return relayed(await orchestrator.open("POST", "/v1/batches", data=batch.model_dump_json()))


@router.get("/v1/batches", responses={401: {}, 429: {}, 502: {}})
async def list_batches(
    orchestrator: Upstream,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(pattern=BATCH_ID)] = None,
) -> Response:
    params = {"limit": str(limit), **({"after": after} if after else {})}
    return relayed(await orchestrator.open("GET", "/v1/batches", params=params))


@router.get("/v1/batches/{batch_id}", responses={401: {}, 404: {}, 429: {}, 502: {}})
async def get_batch(batch_id: BatchId, orchestrator: Upstream) -> Response:
    return relayed(await orchestrator.open("GET", f"/v1/batches/{batch_id}"))


@router.post("/v1/batches/{batch_id}/cancel", responses={400: {}, 401: {}, 404: {}, 429: {}, 502: {}})
async def cancel_batch(batch_id: BatchId, orchestrator: Upstream) -> Response:
    return relayed(await orchestrator.open("POST", f"/v1/batches/{batch_id}/cancel"))
