"""OpenAI's Batch API, its files: uploaded (checked line by line here, then stored by the
orchestrator), listed, read and deleted."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from services.gateway import metrics
from services.gateway.batch_input import FILE_ID, FileListQuery, check_file
from services.gateway.deps import State, User, invalid, not_found, read_limited, too_large
from services.gateway.upstream import Orchestrator, Upstream, relayed
from services.servicekit.batch_lines import NUL_REFUSED, InvalidFile
from services.servicekit.errors import ApiError

router = APIRouter()
UPLOAD_PATH = "/v1/files"
# What a multipart body adds to its file: boundaries, part headers, the purpose field.
MULTIPART_ENVELOPE_BYTES = 16384
MAX_FILENAME_CHARS = 255


async def known_file_id(file_id: str, _: User) -> str:
    """An admitted caller's file id."""
    if not re.fullmatch(FILE_ID, file_id):
        raise not_found()
    return file_id


async def file_list_query(request: Request) -> FileListQuery:
    """The query of GET /v1/files, checked before the caller is."""
    try:
        return FileListQuery.model_validate(dict(request.query_params))
    except ValidationError as err:
        raise invalid(err.errors()[0]) from None


FileId = Annotated[str, Depends(known_file_id)]


@router.post(UPLOAD_PATH, responses={400: {}, 401: {}, 413: {}, 429: {}, 502: {}, 503: {}})
async def create_file(request: Request, state: State, orchestrator: Upstream) -> Response:
    user_id = orchestrator.user_id
    slot = state.uploads.take(user_id)
    if slot == "user_busy":
        metrics.RATE_LIMITED.labels("uploads").inc()
        raise ApiError(
            429,
            f"at most {state.settings.batch_concurrent_uploads_per_user} of your uploads at a time; "
            "retry when one of them has ended",
            "rate_limit_error",
            "too_many_uploads",
            headers={"Retry-After": "5"},
        )
    if slot == "all_busy":
        raise ApiError(
            503,
            "too many uploads in progress; retry shortly",
            "api_error",
            "uploads_busy",
            headers={"Retry-After": "5"},
        )
    try:
        return await store_file(request, state, orchestrator)
    finally:
        state.uploads.give_back(user_id)


async def store_file(request: Request, state: State, orchestrator: Orchestrator) -> Response:
    most = state.settings.batch_max_file_bytes
    body = await read_limited(request, most + MULTIPART_ENVELOPE_BYTES, named=most)
    filename, data = await uploaded_file(request, body)
    del body  # the file is in the upload now: one copy fewer while it is checked and sent on
    if len(data) > most:
        raise too_large(most)
    try:
        # Pydantic holds the GIL, but a thread is still switched out every few milliseconds:
        # a 30 MiB file does not stop the other requests' streams for the half second it takes.
        await asyncio.to_thread(check_file, data, state.line_limits)
    except InvalidFile as err:
        raise ApiError(400, str(err), "invalid_request_error", "invalid_file") from None
    params = {"purpose": "batch", "filename": filename}
    return relayed(
        await orchestrator.open("POST", UPLOAD_PATH, data=data, params=params, content_type="application/jsonl")
    )


def refused(message: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error", "invalid_upload")


async def uploaded_file(request: Request, body: bytes) -> tuple[str, bytes]:
    """The name and bytes of the multipart body's ``file``, whose ``purpose`` must be batch."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise refused("POST /v1/files takes multipart/form-data with the fields file and purpose")

    async def replayed() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, replayed(), max_files=1, max_fields=8).parse()
    except MultiPartException as err:
        raise refused(f"the multipart body cannot be read: {err.message}") from None
    try:
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch":
            raise refused("purpose: only 'batch' is accepted")
        if not isinstance(upload, UploadFile):
            raise refused("file: the multipart body has no file")
        filename = upload.filename or "batch.jsonl"
        if len(filename) > MAX_FILENAME_CHARS:
            raise refused(f"file: its name is longer than {MAX_FILENAME_CHARS} characters")
        if "\x00" in filename:
            raise refused(f"file: its name {NUL_REFUSED}")
        return filename, await upload.read()
    finally:
        await form.close()


@router.get(UPLOAD_PATH, responses={400: {}, 401: {}, 429: {}, 502: {}})
async def list_files(query: Annotated[FileListQuery, Depends(file_list_query)], orchestrator: Upstream) -> Response:
    return relayed(await orchestrator.open("GET", UPLOAD_PATH, params=query.params()))


@router.delete("/v1/files/{file_id}", responses={401: {}, 404: {}, 429: {}, 502: {}})
async def delete_file(file_id: FileId, orchestrator: Upstream) -> Response:
    return relayed(await orchestrator.open("DELETE", f"/v1/files/{file_id}"))


@router.get("/v1/files/{file_id}", responses={401: {}, 404: {}, 429: {}, 502: {}})
async def get_file(file_id: FileId, orchestrator: Upstream) -> Response:
    return relayed(await orchestrator.open("GET", f"/v1/files/{file_id}"))


@router.get("/v1/files/{file_id}/content", responses={401: {}, 404: {}, 429: {}, 502: {}})
async def file_content(file_id: FileId, orchestrator: Upstream) -> Response:
    return relayed(await orchestrator.open("GET", f"/v1/files/{file_id}/content"))
