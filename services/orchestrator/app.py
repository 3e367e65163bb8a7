"""The orchestrator's HTTP API: POST /v1/chat/completions, the batch routes
(services.orchestrator.batch) and GET /health.

Reached only from the gateway (internal ingress; run.invoker for the gateway alone),
which passes the authenticated user in X-User-Id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from services.modelcalls.backends import Backend, BackendUnavailable, GoogleAccessToken
from services.modelcalls.database import create_pool
from services.modelcalls.ledger import HANDOFF_SECONDS, Ledger, LedgerUnavailable, Outcome
from services.modelcalls.refusals import answer_head, backend_error
from services.modelcalls.routing import backends_for
from services.modelcalls.usage import UsageBound, UsageInvalid, UsageMeter, estimate_tokens, usage_bound
from services.orchestrator import idempotency
from services.orchestrator.batch.queue import Publisher, outcome_message
from services.orchestrator.batch.routes import batch_router
from services.orchestrator.batch.store import BatchStore
from services.orchestrator.callers import CERTS_CACHE_SECONDS, CERTS_MIN_REFRESH_SECONDS, CallerCheck, RequireCaller
from services.orchestrator.idempotency import IdempotencyKeys
from services.orchestrator.settings import OrchestratorSettings
from services.servicekit import logs
from services.servicekit.blobs import BlobStore
from services.servicekit.errors import error_response, stream_broke_event
from services.servicekit.jwks import JwksCache

log = logging.getLogger("orchestrator")
# The 502s of an answer that broke or could not be metered once the backend had begun it.
BACKEND_STOPPED = ("the model backend stopped answering", "api_error", "upstream_aborted")
USAGE_INVALID = ("the model backend reported usage that is not a token count", "api_error", "invalid_upstream_usage")


def create_app(settings: OrchestratorSettings, conninfo: str | None = None) -> FastAPI:
    """``conninfo`` overrides the database settings (tests); by default they come from ``settings``."""
    tokens = GoogleAccessToken(["https://www.googleapis.com/auth/cloud-platform"])
    backends = {name: Backend(name, backend, tokens) for name, backend in settings.backends.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_pool(
            settings.database_auth,
            settings.database_pool_size,
            settings.database_timeout_seconds,
            settings.conninfo() if conninfo is None else conninfo,
            settings.database_server_ca,
        )
        ledger = Ledger(
            pool,
            timeout=settings.database_timeout_seconds,
            stale_after=settings.max_request_seconds + settings.stale_margin_seconds,
            reconcile_seconds=settings.reconcile_interval_seconds,
            drain_seconds=settings.shutdown_drain_seconds,
        )
        await ledger.start()
        try:
            await ledger.migrate()
        except Exception as err:  # the database may be down: migrations are retried on first use
            logs.event(log, "migrations deferred", logging.WARNING, error=type(err).__name__)
        async with aiohttp.ClientSession(
            # total: no request outlives max_request_seconds, which bounds how long a row stays started.
            timeout=aiohttp.ClientTimeout(
                total=settings.max_request_seconds, sock_connect=settings.connect_timeout_seconds
            ),
            connector=aiohttp.TCPConnector(limit=1000),
            # Backends are asked for identity encoding; one that compresses anyway is decoded
            # here, as the ledger must read the usage and the caller is sent no Content-Encoding.
            auto_decompress=True,
        ) as client:
            app.state.ledger, app.state.client = ledger, client
            if settings.caller_audience is not None:
                certs = JwksCache(settings.caller_certs_url, client, CERTS_CACHE_SECONDS, CERTS_MIN_REFRESH_SECONDS)
                app.state.callers = CallerCheck(certs, settings.caller_audience, settings.callers)
            app.state.idempotency = IdempotencyKeys(
                ledger,
                settings.idempotency_window_seconds,
                settings.max_request_seconds + settings.stale_margin_seconds,
            )
            if settings.batch_bucket and settings.batch_topic:
                app.state.publisher = Publisher(settings.batch_topic)
                # Pub/Sub outlives the instance, and keeps a message till the workers (which
                # hold the ledger's credentials too) write it: a charge survives shutdown with
                # the database down. A file would die with Cloud Run's in-memory filesystem.
                ledger.handoff = lambda outcomes: app.state.publisher.publish(
                    [outcome_message(o.fields()) for o in outcomes], HANDOFF_SECONDS
                )
                blobs = BlobStore(
                    settings.batch_bucket,
                    client,
                    tokens if settings.storage_auth == "google-access-token" else None,
                    settings.storage_url,
                )
                timeout = settings.batch_create_timeout_seconds
                app.state.batches = BatchStore(
                    ledger, blobs, app.state.publisher, timeout, timeout, settings.batch_worker_database_user
                )
                try:
                    await app.state.batches.grant_worker()
                except Exception as err:  # the database or the workers' user not there yet: retried later
                    logs.event(log, "batch privileges deferred", logging.WARNING, error=repr(err)[:500])
            try:
                yield
            finally:
                await ledger.stop()  # before the publisher closes: it may hand outcomes to it
                if app.state.batches:
                    app.state.publisher.close()

    app = FastAPI(title="AI platform orchestrator", version="1.0.0", lifespan=lifespan)
    if settings.caller_auth == "google-id-token":
        app.add_middleware(RequireCaller, check=lambda: app.state.callers)
    else:
        # Said at every start, where it shows: the routes bill whoever X-User-Id names.
        logs.event(
            log, "caller check OFF (CALLER_AUTH=none): any caller is served; for local runs only", logging.WARNING
        )
    app.state.batches = None
    app.include_router(batch_router(lambda: app.state.batches))

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        logs.request_id.set(request_id)
        user_id = request.headers.get("x-user-id")
        if not user_id:
            return error_response(400, "X-User-Id is required", "invalid_request_error", "no_user")
        try:
            raw = await request.body()
            body = json.loads(raw)
            model = body["model"]
            if not (isinstance(model, str) and isinstance(body.get("messages"), list)):
                raise ValueError("not a chat completion request")
        except (ValueError, KeyError, TypeError):
            return error_response(400, "invalid chat completion request", "invalid_request_error", "invalid_request")
        route = backends_for(model, settings.routes)
        if not route:
            return error_response(404, f"no backend serves model {model!r}", "invalid_request_error", "model_not_found")

        claim = await idempotency.of(request).begin(request, user_id, "chat.completions", raw)
        if isinstance(claim, Response):  # a replay, or why the request cannot run now
            return claim
        ledger: Ledger = request.app.state.ledger
        try:
            entry = await ledger.open_entry(
                request_id,
                user_id,
                model,
                settings.daily_token_quota,
                estimate_tokens(body, settings.quota_default_completion_tokens),
            )
        except LedgerUnavailable as err:
            logs.event(log, "ledger unavailable", logging.ERROR, error=str(err))
            return await claim.settle(
                error_response(
                    503,
                    "usage ledger unavailable; retry shortly",
                    "api_error",
                    "ledger_unavailable",
                    headers={"Retry-After": "5"},
                )
            )
        if entry is None:
            return await claim.settle(
                error_response(429, "daily token quota used up", "rate_limit_error", "quota_exceeded")
            )

        try:
            upstream, backend = await _first_answer(request.app.state.client, route, body)
        except asyncio.CancelledError:  # shutdown ended the wait: the row must not stay started
            ledger.close_entry(Outcome(entry, "client_aborted", None, 0, 0))
            claim.release_soon()  # nothing ran: a retry may
            raise
        if upstream is None:
            ledger.close_entry(Outcome(entry, "failed", None, 0, 0))
            return await claim.settle(
                error_response(502, "no model backend answered", "api_error", "backends_unavailable")
            )
        if upstream.status >= 400:
            ledger.close_entry(Outcome(entry, "failed", backend, 0, 0))
            return await claim.settle(await _refusal(upstream))
        meter = UsageMeter()
        bound = usage_bound(body, settings.usage_bound_completion_tokens)
        headers = {"content-type": upstream.headers.get("content-type", "application/json")}

        if not body.get("stream"):
            outcome, error = "client_aborted", None  # unless the read below ends, one way or the other
            try:
                content = await upstream.read()
                meter.read_body(content)
                outcome = "completed"
            except (TimeoutError, aiohttp.ClientError):
                outcome, error = "upstream_aborted", BACKEND_STOPPED
            except UsageInvalid:
                outcome, error = "failed", USAGE_INVALID
            finally:
                upstream.release()
                ledger.close_entry(
                    charged(Outcome(entry, outcome, backend, meter.prompt_tokens, meter.completion), bound)
                )
                if outcome == "client_aborted":  # cancelled (shutdown) before the answer was read: nothing billed
                    claim.release_soon()
            if error:
                return await claim.settle(error_response(502, *error))
            return await claim.settle(Response(content=content, status_code=upstream.status, headers=headers))

        async def relay() -> AsyncIterator[bytes]:
            outcome = "upstream_aborted"
            recorded = bytearray()  # what the caller is sent, for replays under its idempotency key
            checkpointed, checkpointing = time.monotonic(), None
            try:
                async for chunk in upstream.content.iter_any():
                    meter.feed(chunk)
                    if claim.key is not None:
                        recorded += chunk
                    yield chunk
                    # What reached the client is charged should the instance die (SIGKILL): at
                    # most one checkpoint a stream at a time, and one per interval.
                    if time.monotonic() - checkpointed >= settings.usage_checkpoint_seconds and (
                        checkpointing is None or checkpointing.done()
                    ):
                        checkpointed = time.monotonic()
                        tokens = bound.clamp(meter.prompt_tokens, meter.completion)[:2]
                        checkpointing = asyncio.create_task(ledger.checkpoint(entry, *tokens))
                outcome = "completed" if meter.done else "upstream_aborted"
            except (TimeoutError, aiohttp.ClientError) as err:
                logs.event(log, "backend stream broke", logging.WARNING, backend=backend, error=type(err).__name__)
            except UsageInvalid:
                # The reply cannot be metered: stop passing it on, and say so rather than [DONE].
                logs.event(log, "backend usage is not a token count", logging.WARNING, backend=backend)
                outcome = "failed"
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "client_aborted"
                raise
            finally:
                ledger.close_entry(
                    charged(Outcome(entry, outcome, backend, meter.prompt_tokens, meter.completion), bound)
                )
                upstream.close()  # drops the backend's stream too when the client has gone
                # Billed, so kept, even cut short; a replay then ends as the stream did, or with
                # the error event in place of the end the caller who left never got.
                whole = outcome == "completed"
                claim.record_soon(
                    upstream.status, headers["content-type"], bytes(recorded) + (b"" if whole else stream_broke_event())
                )
            if outcome in ("upstream_aborted", "failed"):
                yield stream_broke_event()

        return StreamingResponse(
            relay(), status_code=upstream.status, headers=headers, media_type=headers["content-type"]
        )

    async def _first_answer(
        client: aiohttp.ClientSession, route: list[str], body: dict[str, Any]
    ) -> tuple[aiohttp.ClientResponse, str] | tuple[None, None]:
        """Try the route's backends in order; retrying is safe only before a byte is passed on."""
        for name in route:
            try:
                return await backends[name].open(client, body, settings.first_byte_timeout_seconds), name
            except BackendUnavailable as err:
                logs.event(log, "backend unavailable", logging.WARNING, error=str(err))
        return None, None

    async def _refusal(upstream: aiohttp.ClientResponse) -> Response:
        """A backend's 4xx (a 5xx, 408 or 429 went on to the next backend), before any byte was
        passed on: an OpenAI-style JSON error with the same status, streaming or not, and never
        the backend's own page or an event stream made of it. A 401 or 403 refused the
        orchestrator's credentials, not the caller's: 502."""
        try:
            raw = await asyncio.wait_for(answer_head(upstream), settings.first_byte_timeout_seconds)
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        finally:
            upstream.release()
        if upstream.status in (401, 403):
            logs.event(log, "backend refused our credentials", logging.ERROR, status=upstream.status)
            return error_response(
                502, "the model backend refused the orchestrator's credentials", "api_error", "backend_auth_failed"
            )
        error = backend_error(raw)
        return error_response(
            upstream.status,
            error.get("message") or f"the model backend refused the request (HTTP {upstream.status})",
            error.get("type") or "invalid_request_error",
            error.get("code") or "upstream_refused",
        )

    return app


def charged(outcome: Outcome, bound: UsageBound) -> Outcome:
    """``outcome`` as it is charged: usage beyond what the request could have used is the
    backend's fault, so it is charged the bound and recorded usage_invalid."""
    prompt, completion, invalid = bound.charge(outcome.prompt_tokens, outcome.completion_tokens, outcome.backend)
    return Outcome(outcome.entry, "usage_invalid", outcome.backend, prompt, completion) if invalid else outcome


def main() -> FastAPI:
    """The ASGI app uvicorn serves (``services.orchestrator.app:main`` with --factory)."""
    settings = OrchestratorSettings()
    logs.configure(settings.log_level)
    return create_app(settings)
