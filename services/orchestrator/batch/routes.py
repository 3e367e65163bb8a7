"""The batch routes of the orchestrator, behind the gateway (which authenticates the caller,
passes it in X-User-Id, and has validated every input file line by line)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.modelcalls.ledger import LedgerUnavailable
from services.orchestrator import idempotency
from services.orchestrator.batch.store import BatchStore, NotFound, Refused
from services.orchestrator.deps import UserId
from services.servicekit import logs
from services.servicekit.blobs import BlobNotFound, BlobStoreError
from services.servicekit.errors import ApiError

log = logging.getLogger("orchestrator.batch")
MAX_LIST = 100  # OpenAI's limit on a page of batches
MAX_FILES = 10_000  # ... and of files, also its default


router = APIRouter()


def batch_store(request: Request) -> BatchStore:
    """The app's BatchStore; 404 where batches are not enabled."""
    store: BatchStore | None = request.app.state.batches
    if store is None:
        raise ApiError(404, "batches are not enabled", "invalid_request_error", "not_found")
    return store


Batches = Annotated[BatchStore, Depends(batch_store)]


async def answer(work: Awaitable[Any]) -> Response:
    """``work``'s result as JSON (or as the Response it is), its failures as the errors to answer."""
    try:
        result = await work
    except NotFound as err:
        raise ApiError(404, str(err), "invalid_request_error", "not_found") from None
    except Refused as err:
        raise ApiError(400, str(err), "invalid_request_error", None, param=err.param) from None
    except LedgerUnavailable as err:
        logs.event(log, "batch database unavailable", logging.ERROR, error=str(err))
        raise ApiError(
            503, "batch store unavailable; retry shortly", "api_error", "store_unavailable", {"Retry-After": "5"}
        ) from None
    except (BlobStoreError, BlobNotFound, OSError) as err:  # OSError: aiohttp's connection errors too
        logs.event(log, "bucket unavailable", logging.ERROR, error=repr(err)[:500])
        raise ApiError(
            503, "file storage unavailable; retry shortly", "api_error", "storage_unavailable", {"Retry-After": "5"}
        ) from None
    return result if isinstance(result, Response) else JSONResponse(result)


@router.post("/v1/files")
async def create_file(request: Request, store: Batches, user: UserId, filename: str, purpose: str) -> Response:
    if purpose != "batch":
        raise ApiError(400, "purpose must be 'batch'", "invalid_request_error", "invalid_purpose")
    data = await request.body()
    payload = json.dumps([filename, purpose]).encode() + b"\n" + data
    return await idempotency.of(request).run(
        request, user, "files", payload, lambda: answer(store.create_file(user, filename, data))
    )


@router.get("/v1/files")
async def list_files(
    store: Batches,
    user: UserId,
    purpose: str | None = None,
    limit: int = MAX_FILES,
    order: str = "desc",
    after: str | None = None,
) -> Response:
    limit = max(1, min(limit, MAX_FILES))
    return await answer(store.list_files(user, purpose, limit, order == "asc", after))


@router.delete("/v1/files/{file_id}")
async def delete_file(store: Batches, user: UserId, file_id: str) -> Response:
    return await answer(store.delete_file(user, file_id))


@router.get("/v1/files/{file_id}")
async def get_file(store: Batches, user: UserId, file_id: str) -> Response:
    return await answer(store.get_file(user, file_id))


@router.get("/v1/files/{file_id}/content")
async def file_content(store: Batches, user: UserId, file_id: str) -> Response:
    return await answer(content(store, user, file_id))


async def content(store: BatchStore, user: str, file_id: str) -> Response:
    row = await store.file_row(user, file_id)
    chunks = store.blobs.stream(row["object_name"])
    first = await anext(chunks, b"")  # a missing object is an error before the answer starts

    async def relay() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(relay(), media_type="application/octet-stream")


@router.post("/v1/batches")
async def create_batch(request: Request, store: Batches, user: UserId) -> Response:
    try:
        raw = await request.body()
        body = json.loads(raw)
        asked = (body["input_file_id"], body["endpoint"], body["completion_window"], body.get("metadata"))
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid batch request", "invalid_request_error", "invalid_request") from None
    return await idempotency.of(request).run(
        request, user, "batches", raw, lambda: answer(store.create_batch(user, *asked))
    )


@router.get("/v1/batches")
async def list_batches(store: Batches, user: UserId, limit: int = 20, after: str | None = None) -> Response:
    return await answer(store.list_batches(user, max(1, min(limit, MAX_LIST)), after))


@router.get("/v1/batches/{batch_id}")
async def get_batch(store: Batches, user: UserId, batch_id: str) -> Response:
    return await answer(store.get_batch(user, batch_id))


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(store: Batches, user: UserId, batch_id: str) -> Response:
    return await answer(store.cancel_batch(user, batch_id))
