"""The batch routes of the orchestrator, behind the gateway (which authenticates the caller,
passes it in X-User-Id, and has validated every input file line by line)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.modelcalls.ledger import LedgerUnavailable
from services.orchestrator import idempotency
from services.orchestrator.batch.store import BatchStore, NotFound, Refused
from services.servicekit import logs
from services.servicekit.blobs import BlobNotFound, BlobStoreError
from services.servicekit.errors import error_response

log = logging.getLogger("orchestrator.batch")
NOT_ENABLED = ("batches are not enabled", "invalid_request_error", "not_found")
MAX_LIST = 100  # OpenAI's limit on a page of batches
MAX_FILES = 10_000  # ... and of files, also its default


def batch_router(store: Callable[[], BatchStore | None]) -> APIRouter:
    """``store``: the app's BatchStore once it is running, None where batches are not enabled."""
    router = APIRouter()

    async def serve(request: Request, work: Callable[[BatchStore, str], Awaitable[Any]]) -> Response:
        batches = store()
        if batches is None:
            return error_response(404, *NOT_ENABLED)
        user_id = request.headers.get("x-user-id")
        if not user_id:
            return error_response(400, "X-User-Id is required", "invalid_request_error", "no_user")
        try:
            result = await work(batches, user_id)
        except NotFound as err:
            return error_response(404, str(err), "invalid_request_error", "not_found")
        except Refused as err:
            return JSONResponse(
                status_code=400,
                content={
                    "error": {"message": str(err), "type": "invalid_request_error", "param": err.param, "code": None}
                },
            )
        except LedgerUnavailable as err:
            logs.event(log, "batch database unavailable", logging.ERROR, error=str(err))
            return error_response(
                503, "batch store unavailable; retry shortly", "api_error", "store_unavailable", {"Retry-After": "5"}
            )
        except (BlobStoreError, BlobNotFound, OSError) as err:  # OSError: aiohttp's connection errors too
            logs.event(log, "bucket unavailable", logging.ERROR, error=repr(err)[:500])
            return error_response(
                503, "file storage unavailable; retry shortly", "api_error", "storage_unavailable", {"Retry-After": "5"}
            )
        return result if isinstance(result, Response) else JSONResponse(result)

    @router.post("/v1/files")
    async def create_file(request: Request, filename: str, purpose: str) -> Response:
        if purpose != "batch":
            return error_response(400, "purpose must be 'batch'", "invalid_request_error", "invalid_purpose")
        data = await request.body()
        payload = json.dumps([filename, purpose]).encode() + b"\n" + data
        return await idempotency.of(request).run(
            request, "files", payload, lambda: serve(request, lambda s, user: s.create_file(user, filename, data))
        )

    @router.get("/v1/files")
    async def list_files(
        request: Request,
        purpose: str | None = None,
        limit: int = MAX_FILES,
        order: str = "desc",
        after: str | None = None,
    ) -> Response:
        limit = max(1, min(limit, MAX_FILES))
        return await serve(request, lambda s, user: s.list_files(user, purpose, limit, order == "asc", after))

    @router.delete("/v1/files/{file_id}")
    async def delete_file(request: Request, file_id: str) -> Response:
        return await serve(request, lambda s, user: s.delete_file(user, file_id))

    @router.get("/v1/files/{file_id}")
    async def get_file(request: Request, file_id: str) -> Response:
        return await serve(request, lambda s, user: s.get_file(user, file_id))

    @router.get("/v1/files/{file_id}/content")
    async def file_content(request: Request, file_id: str) -> Response:
        async def content(s: BatchStore, user: str) -> Response:
            row = await s.file_row(user, file_id)
            chunks = s.blobs.stream(row["object_name"])
            first = await anext(chunks, b"")  # a missing object is an error before the answer starts

            async def relay() -> AsyncIterator[bytes]:
                yield first
                async for chunk in chunks:
                    yield chunk

            return StreamingResponse(relay(), media_type="application/octet-stream")

        return await serve(request, content)

    @router.post("/v1/batches")
    async def create_batch(request: Request) -> Response:
        try:
            raw = await request.body()
            body = json.loads(raw)
            asked = (body["input_file_id"], body["endpoint"], body["completion_window"], body.get("metadata"))
        except (ValueError, KeyError, TypeError):
            return error_response(400, "invalid batch request", "invalid_request_error", "invalid_request")
        return await idempotency.of(request).run(
            request, "batches", raw, lambda: serve(request, lambda s, user: s.create_batch(user, *asked))
        )

    @router.get("/v1/batches")
    async def list_batches(request: Request, limit: int = 20, after: str | None = None) -> Response:
        return await serve(request, lambda s, user: s.list_batches(user, max(1, min(limit, MAX_LIST)), after))

    @router.get("/v1/batches/{batch_id}")
    async def get_batch(request: Request, batch_id: str) -> Response:
        return await serve(request, lambda s, user: s.get_batch(user, batch_id))

    @router.post("/v1/batches/{batch_id}/cancel")
    async def cancel_batch(request: Request, batch_id: str) -> Response:
        return await serve(request, lambda s, user: s.cancel_batch(user, batch_id))

    return router
