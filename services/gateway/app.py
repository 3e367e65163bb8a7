"""The gateway's HTTP API: POST /v1/chat/completions (streaming or not), OpenAI's Batch API
(files and batches, services.gateway.batch_input), GET /health, /openapi.json."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import aiohttp
import google.auth.exceptions
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.auth import JwksCache, Unauthorized, Verifier
from services.gateway.batch_input import BATCH_ID, FILE_ID, BatchCreateRequest, FileListQuery, LineLimits, check_file
from services.gateway.protocol import HttpToolsWithHeaderDeadline
from services.gateway.ratelimit import limiter_for, retry_after
from services.gateway.settings import GatewaySettings
from services.gateway.uploads import UploadSlots
from services.servicekit import logs
from services.servicekit.batch_lines import NUL_REFUSED, InvalidFile
from services.servicekit.chat import ChatCompletionRequest, field_path
from services.servicekit.errors import error_response, stream_broke_event
from services.servicekit.identity import IdTokenSource, NoToken

log = logging.getLogger("gateway")
Body = TypeVar("Body", bound=BaseModel)
# Headers of the orchestrator's answer the caller may see. Its bytes pass unchanged, so an
# answer compressed all the same keeps its Content-Encoding.
PASSED_HEADERS = ("content-encoding", "content-type", "idempotent-replayed", "retry-after", "x-request-id")
STREAM_BROKE = stream_broke_event()
UPLOAD_PATH = "/v1/files"
# What a multipart body adds to its file: boundaries, part headers, the purpose field.
MULTIPART_ENVELOPE_BYTES = 16384
MAX_FILENAME_CHARS = 255


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=settings.upstream_connect_timeout_seconds,
                sock_read=settings.upstream_read_timeout_seconds,
            ),
            connector=aiohttp.TCPConnector(limit=1000),
            auto_decompress=False,  # pass bytes through as they come
            # ... so ask for them uncompressed (aiohttp offers gzip and more by default): the JWKS
            # is parsed here, and a relayed stream may end with an event of the gateway's own.
            headers={"Accept-Encoding": "identity"},
        ) as client:
            app.state.client = client
            app.state.verifier = Verifier(
                JwksCache(settings.jwks_url, client, settings.jwks_cache_seconds, settings.jwks_min_refresh_seconds),
                settings.jwt_issuer,
                settings.jwt_audience,
                settings.clock_leeway_seconds,
                settings.max_token_bytes,
            )
            try:
                yield
            finally:
                await limiter.close()

    app = FastAPI(title="AI platform gateway", version="1.0.0", lifespan=lifespan)
    limiter = limiter_for(settings)
    identity = (
        IdTokenSource(settings.orchestrator_audience or settings.orchestrator_url)
        if settings.orchestrator_auth == "google-id-token"
        else NoToken()
    )
    orchestrator = settings.orchestrator_url.rstrip("/")
    uploads = UploadSlots(settings.batch_concurrent_uploads, settings.batch_concurrent_uploads_per_user)
    line_limits = LineLimits(
        max_lines=settings.batch_max_lines,
        max_line_bytes=settings.max_body_bytes,
        max_messages=settings.max_messages,
        max_message_chars=settings.max_message_chars,
    )

    app.add_middleware(
        RequestContext,
        body_idle_timeout=settings.body_idle_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        upload_timeout=settings.batch_upload_timeout_seconds,
        upload_min_rate=settings.batch_upload_min_bytes_per_second,
    )
    if origins := [o.strip() for o in settings.allowed_origins.split(",") if o.strip()]:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["authorization", "content-type", "idempotency-key", "x-request-id"],
            expose_headers=["idempotent-replayed", "retry-after", "x-request-id"],
            max_age=600,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid request", "invalid_request_error", "invalid_request")

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str | int]:
        # Whether the rate limit is shared right now, and how many requests were limited by this
        # instance alone because Redis did not answer.
        mode = "shared" if limiter.shared else "per-instance"
        return {"status": "ok", "rate_limit": mode, "rate_limit_fallbacks": limiter.fallbacks}

    @app.post(
        "/v1/chat/completions",
        responses={400: {}, 401: {}, 413: {}, 429: {}, 502: {}, 503: {}},
        # The body is read by hand (after authentication, within a size limit); document it here.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
            }
        },
    )
    async def chat_completions(request: Request) -> Response:
        admitted = await admit_json(request, ChatCompletionRequest)
        if isinstance(admitted, Response):
            return admitted
        user_id, chat = admitted
        if len(chat.messages) > settings.max_messages:
            return error_response(
                400, f"at most {settings.max_messages} messages", "invalid_request_error", "too_many_messages"
            )
        if any(len(m.content) > settings.max_message_chars for m in chat.messages):
            return error_response(
                400,
                f"a message is longer than {settings.max_message_chars} characters",
                "invalid_request_error",
                "message_too_long",
            )
        upstream = await open_upstream(request, "POST", "/v1/chat/completions", user_id, data=chat.forwarded())
        if isinstance(upstream, Response):
            return upstream
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}
        if not chat.stream or upstream.status >= 400:
            try:
                content = await upstream.read()
            except (aiohttp.ClientError, TimeoutError):
                return error_response(502, "the model service stopped answering", "api_error", "upstream_aborted")
            finally:
                upstream.release()
            return Response(content=content, status_code=upstream.status, headers=passed)

        return UpstreamStream(upstream, passed)

    async def admit_json(request: Request, model: type[Body]) -> tuple[str, Body] | Response:
        """The admitted caller and the request's JSON body, read within the size limit and
        validated as ``model``; or the 401, 413, 429 or 400 to answer."""
        user_id = await admit(request)
        if isinstance(user_id, Response):
            return user_id
        body = await _read_limited(request, settings.max_body_bytes)
        if body is None:
            return _too_large(settings.max_body_bytes)
        try:
            return user_id, model.model_validate_json(body)
        except ValidationError as err:
            return _invalid(err.errors()[0])

    async def admit(request: Request) -> str | Response:
        """The authenticated caller's user id, within the rate limit; or the 401 or 429 to answer."""
        try:
            caller = await request.app.state.verifier.verify(request.headers.get("authorization"))
        except Unauthorized as err:
            logs.event(log, "unauthorized", logging.WARNING, reason=err.reason)
            return error_response(
                401,
                "missing or invalid credentials",
                "authentication_error",
                "invalid_token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        wait = await limiter.take(caller.user_id)
        if wait:
            return error_response(
                429,
                "rate limit exceeded; retry later",
                "rate_limit_error",
                "rate_limited",
                headers={"Retry-After": retry_after(wait)},
            )
        return str(caller.user_id)

    async def open_upstream(
        request: Request,
        method: str,
        path: str,
        user_id: str,
        *,
        data: bytes | str | None = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse | Response:
        """The orchestrator's answer to the request made for ``user_id``, or the 502 to answer."""
        client: aiohttp.ClientSession = request.app.state.client
        try:
            credentials = await identity.header()
        except google.auth.exceptions.GoogleAuthError as err:
            logs.event(log, "no ID token for the orchestrator", logging.ERROR, error=type(err).__name__)
            return error_response(502, "cannot authenticate to the model service", "api_error", "upstream_auth")
        headers = {
            **credentials,
            "x-user-id": user_id,
            "x-request-id": logs.request_id.get() or "",
        }
        if data is not None:
            headers["content-type"] = content_type
        # The orchestrator holds the keys (in its database, for every instance) and checks them.
        if (key := request.headers.get("idempotency-key")) is not None:
            headers["idempotency-key"] = key
        try:
            upstream = await client.request(method, orchestrator + path, data=data, params=params, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as err:
            logs.event(log, "orchestrator unreachable", logging.ERROR, error=type(err).__name__)
            return error_response(502, "the model service is unreachable", "api_error", "upstream_unavailable")
        if upstream.status in (401, 403):
            # The orchestrator (or Cloud Run before it) refused the gateway's own identity, not
            # the user's token: passed on, the user would be told to sign in again.
            upstream.release()
            logs.event(log, "orchestrator refused our credentials", logging.ERROR, status=upstream.status)
            return error_response(502, "cannot authenticate to the model service", "api_error", "upstream_auth")
        return upstream

    async def pass_on(
        request: Request, method: str, path: str, *, well_formed: bool = True, params: dict[str, str] | None = None
    ) -> Response:
        """For the batch routes: the orchestrator's answer to an admitted caller. An id that
        cannot be one is not found, as any other unknown id."""
        user_id = await admit(request)
        if isinstance(user_id, Response):
            return user_id
        if not well_formed:
            return error_response(404, "no such object", "invalid_request_error", "not_found")
        return relayed(await open_upstream(request, method, path, user_id, params=params))

    @app.post("/v1/files", responses={400: {}, 401: {}, 413: {}, 429: {}, 502: {}, 503: {}})
    async def create_file(request: Request) -> Response:
        user_id = await admit(request)
        if isinstance(user_id, Response):
            return user_id
        slot = uploads.take(user_id)
        if slot == "user_busy":
            return error_response(
                429,
                f"at most {settings.batch_concurrent_uploads_per_user} of your uploads at a time; "
                "retry when one of them has ended",
                "rate_limit_error",
                "too_many_uploads",
                headers={"Retry-After": "5"},
            )
        if slot == "all_busy":
            return error_response(
                503,
                "too many uploads in progress; retry shortly",
                "api_error",
                "uploads_busy",
                headers={"Retry-After": "5"},
            )
        try:
            return await store_file(request, user_id)
        finally:
            uploads.give_back(user_id)

    async def store_file(request: Request, user_id: str) -> Response:
        body = await _read_limited(request, settings.batch_max_file_bytes + MULTIPART_ENVELOPE_BYTES)
        if body is None:
            return _too_large(settings.batch_max_file_bytes)
        upload = await _uploaded_file(request, body)
        del body  # the file is in the upload now: one copy fewer while it is checked and sent on
        if isinstance(upload, Response):
            return upload
        filename, data = upload
        if len(data) > settings.batch_max_file_bytes:
            return _too_large(settings.batch_max_file_bytes)
        try:
            # Pydantic holds the GIL, but a thread is still switched out every few milliseconds:
            # a 30 MiB file does not stop the other requests' streams for the half second it takes.
            await asyncio.to_thread(check_file, data, line_limits)
        except InvalidFile as err:
            return error_response(400, str(err), "invalid_request_error", "invalid_file")
        params = {"purpose": "batch", "filename": filename}
        return relayed(
            await open_upstream(
                request, "POST", "/v1/files", user_id, data=data, params=params, content_type="application/jsonl"
            )
        )

    @app.get("/v1/files", responses={400: {}, 401: {}, 429: {}, 502: {}})
    async def list_files(request: Request) -> Response:
        try:
            query = FileListQuery.model_validate(dict(request.query_params))
        except ValidationError as err:
            return _invalid(err.errors()[0])
        return await pass_on(request, "GET", "/v1/files", params=query.params())

    @app.delete("/v1/files/{file_id}", responses={401: {}, 404: {}, 429: {}, 502: {}})
    async def delete_file(request: Request, file_id: str) -> Response:
        return await pass_on(
            request, "DELETE", f"/v1/files/{file_id}", well_formed=bool(re.fullmatch(FILE_ID, file_id))
        )

    @app.get("/v1/files/{file_id}", responses={401: {}, 404: {}, 429: {}, 502: {}})
    async def get_file(request: Request, file_id: str) -> Response:
        return await pass_on(request, "GET", f"/v1/files/{file_id}", well_formed=bool(re.fullmatch(FILE_ID, file_id)))

    @app.get("/v1/files/{file_id}/content", responses={401: {}, 404: {}, 429: {}, 502: {}})
    async def file_content(request: Request, file_id: str) -> Response:
        path = f"/v1/files/{file_id}/content"
        return await pass_on(request, "GET", path, well_formed=bool(re.fullmatch(FILE_ID, file_id)))

    @app.post(
        "/v1/batches",
        responses={400: {}, 401: {}, 404: {}, 413: {}, 429: {}, 502: {}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchCreateRequest"}}},
            }
        },
    )
    async def create_batch(request: Request) -> Response:
        admitted = await admit_json(request, BatchCreateRequest)
        if isinstance(admitted, Response):
            return admitted
        user_id, batch = admitted
        return relayed(await open_upstream(request, "POST", "/v1/batches", user_id, data=batch.model_dump_json()))

    @app.get("/v1/batches", responses={401: {}, 429: {}, 502: {}})
    async def list_batches(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        after: Annotated[str | None, Query(pattern=BATCH_ID)] = None,
    ) -> Response:
        params = {"limit": str(limit), **({"after": after} if after else {})}
        return await pass_on(request, "GET", "/v1/batches", params=params)

    @app.get("/v1/batches/{batch_id}", responses={401: {}, 404: {}, 429: {}, 502: {}})
    async def get_batch(request: Request, batch_id: str) -> Response:
        path = f"/v1/batches/{batch_id}"
        return await pass_on(request, "GET", path, well_formed=bool(re.fullmatch(BATCH_ID, batch_id)))

    @app.post("/v1/batches/{batch_id}/cancel", responses={400: {}, 401: {}, 404: {}, 429: {}, 502: {}})
    async def cancel_batch(request: Request, batch_id: str) -> Response:
        path = f"/v1/batches/{batch_id}/cancel"
        return await pass_on(request, "POST", path, well_formed=bool(re.fullmatch(BATCH_ID, batch_id)))

    def relayed(upstream: aiohttp.ClientResponse | Response) -> Response:
        """The orchestrator's answer to a batch route, as it comes (or the gateway's own error)."""
        if isinstance(upstream, Response):
            return upstream
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}
        # A file's content that breaks off cannot say so in its body: the connection is cut instead.
        return UpstreamStream(upstream, passed, broken_tail=None)

    # The bodies read by hand, documented in components.schemas.
    request_schemas: dict[str, Any] = {}
    for model in (ChatCompletionRequest, BatchCreateRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        request_schemas.update({**schema.pop("$defs", {}), model.__name__: schema})

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(request_schemas)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend its OpenAPI document
    return app


class UpstreamStream(Response):
    """The orchestrator's streamed answer, passed on chunk by chunk as it comes. A client
    that leaves closes the orchestrator's stream at once, even while it is silent."""

    def __init__(
        self, upstream: aiohttp.ClientResponse, headers: dict[str, str], broken_tail: bytes | None = STREAM_BROKE
    ) -> None:
        """``broken_tail``: the last bytes sent when the orchestrator's answer breaks off; None
        to cut the connection instead, which the client sees as an incomplete answer."""
        self.upstream, self.broken_tail = upstream, broken_tail
        self.status_code = upstream.status
        self.media_type = headers.get("content-type", "text/event-stream")
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Chunks flow in a task of their own: resuming this request's stack of middleware
        # for every chunk would cost more than passing the chunk on.
        relay = asyncio.ensure_future(self._relay(send))
        client_left = asyncio.ensure_future(_disconnect(receive))
        try:
            done, _ = await asyncio.wait((relay, client_left), return_when=asyncio.FIRST_COMPLETED)
            if relay in done:
                relay.result()
        finally:
            client_left.cancel()
            relay.cancel()  # the client left: stop reading the orchestrator
            self.upstream.close()

    async def _relay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as err:
            logs.event(log, "orchestrator stream broke", logging.WARNING, error=type(err).__name__)
            if self.broken_tail is None:
                raise
            await send({"type": "http.response.body", "body": self.broken_tail, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class BodyTimeout(Exception):
    """The client did not send its request body in time."""


class RequestContext:
    """Pure ASGI middleware (a streamed body passes straight through): sets the request id,
    returns it in X-Request-Id, logs one line per request with status and latency, and holds
    the client to the body's deadlines (uvicorn has none): 408, and the connection closed. A
    batch file's upload (POST /v1/files) has ``body_timeout`` and a second more for every
    ``upload_min_rate`` bytes received, up to ``upload_timeout``: a large file may take long, a
    client that trickles it may not hold its upload slot for long."""

    def __init__(
        self,
        app: ASGIApp,
        body_idle_timeout: float,
        body_timeout: float,
        upload_timeout: float,
        upload_min_rate: float,
    ) -> None:
        self.app, self.body_idle_timeout, self.body_timeout = app, body_idle_timeout, body_timeout
        self.upload_timeout, self.upload_min_rate = upload_timeout, upload_min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if given and len(given) <= 64 and given.replace("-", "").isalnum() else uuid.uuid4().hex
        logs.request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started, status, responded = time.perf_counter(), 500, False
        body_pending = b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"
        head_at, received = time.monotonic(), 0
        upload = scope["path"] == UPLOAD_PATH

        def deadline() -> float:
            if not upload:
                return head_at + self.body_timeout
            earned = self.body_timeout + received / self.upload_min_rate
            return head_at + min(earned, self.upload_timeout)

        async def receive_in_time() -> Message:
            nonlocal body_pending, received
            if not body_pending:
                return await receive()  # after the body, only the client leaving: no deadline
            try:
                async with asyncio.timeout(min(self.body_idle_timeout, deadline() - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            received += len(message.get("body", b""))
            body_pending = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                extra = [(b"x-request-id", rid.encode())]
                if body_pending:
                    # Answered before the body was read (401, 413, 429, 408): close the connection
                    # after this answer, or uvicorn reads the rest for as long as the client sends it.
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_with_id)
        except BodyTimeout:
            if responded:
                raise
            logs.event(log, "request body too slow", logging.WARNING)
            allowed = (
                f"an upload has {self.body_timeout:g} s and a second more for every {self.upload_min_rate} bytes"
                if upload
                else f"a request body has {self.body_timeout:g} s"
            )
            late = error_response(
                408,
                f"the request body did not arrive in time ({allowed}, with no pause over {self.body_idle_timeout:g} s)",
                "invalid_request_error",
                "request_timeout",
            )
            await late(scope, receive, send_with_id)
        finally:
            logs.event(
                log,
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )


def _invalid(error: ErrorDetails) -> JSONResponse:
    """400 naming the field in ``param``, as OpenAI's errors do."""
    param = field_path(error["loc"]) or None  # None: the body as a whole (not JSON, not an object)
    message = f"invalid {param or 'request body'}: {error['msg']}"
    return JSONResponse(
        status_code=400,
        content={
            "error": {"message": message, "type": "invalid_request_error", "param": param, "code": "invalid_request"}
        },
    )


def _too_large(limit: int) -> JSONResponse:
    return error_response(413, f"request body larger than {limit} bytes", "invalid_request_error", "body_too_large")


async def _uploaded_file(request: Request, body: bytes) -> tuple[str, bytes] | JSONResponse:
    """The name and bytes of the multipart body's ``file``, whose ``purpose`` must be batch."""

    def refused(message: str) -> JSONResponse:
        return error_response(400, message, "invalid_request_error", "invalid_upload")

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return refused("POST /v1/files takes multipart/form-data with the fields file and purpose")

    async def replayed() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, replayed(), max_files=1, max_fields=8).parse()
    except MultiPartException as err:
        return refused(f"the multipart body cannot be read: {err.message}")
    try:
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch":
            return refused("purpose: only 'batch' is accepted")
        if not isinstance(upload, UploadFile):
            return refused("file: the multipart body has no file")
        filename = upload.filename or "batch.jsonl"
        if len(filename) > MAX_FILENAME_CHARS:
            return refused(f"file: its name is longer than {MAX_FILENAME_CHARS} characters")
        if "\x00" in filename:
            return refused(f"file: its name {NUL_REFUSED}")
        return filename, await upload.read()
    finally:
        await form.close()


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def main() -> FastAPI:
    """The ASGI app uvicorn serves (``services.gateway.app:main`` with --factory)."""
    settings = GatewaySettings()
    logs.configure(settings.log_level)
    HttpToolsWithHeaderDeadline.header_timeout = settings.header_timeout_seconds  # the image's --http
    app = create_app(settings)
    # Start-up objects never die: keep them out of the collector's full passes, which
    # otherwise pause every stream at once (measured: tens of ms at p99).
    gc.collect()
    gc.freeze()
    return app
