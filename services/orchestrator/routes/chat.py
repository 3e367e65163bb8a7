"""POST /v1/chat/completions: admitted against the user's daily quota, tried on the model's
backends as its route and their health say (services.modelcalls.health), its answer passed on
(services.orchestrator.answers)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import aiohttp
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.modelcalls.health import Router
from services.modelcalls.ledger import Ledger, LedgerUnavailable, Outcome
from services.modelcalls.refusals import answer_head, backend_error
from services.modelcalls.routing import first_answer, route_for
from services.modelcalls.usage import estimate_tokens, usage_bound
from services.orchestrator import idempotency, metrics
from services.orchestrator.answers import BackendAnswer
from services.orchestrator.deps import Settings, UserId
from services.orchestrator.settings import OrchestratorSettings
from services.servicekit import logs
from services.servicekit.errors import ApiError

log = logging.getLogger("orchestrator")
router = APIRouter()


def ledger_unavailable() -> ApiError:
    return ApiError(
        503, "usage ledger unavailable; retry shortly", "api_error", "ledger_unavailable", {"Retry-After": "5"}
    )


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, settings: Settings, user_id: UserId) -> Response:
    started = time.monotonic()
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    logs.request_id.set(request_id)
    raw = await request.body()
    body, model = chat_request(raw)
    route = route_for(model, settings.routes)
    if route is None:
        raise ApiError(404, f"no backend serves model {model!r}", "invalid_request_error", "model_not_found")
    claim = await idempotency.of(request).begin(request, user_id, "chat.completions", raw)
    ledger: Ledger = request.app.state.ledger
    estimate = estimate_tokens(body, settings.quota_default_completion_tokens)
    try:
        entry = await ledger.open_entry(request_id, user_id, model, settings.daily_token_quota, estimate)
    except LedgerUnavailable as err:
        logs.event(log, "ledger unavailable", logging.ERROR, error=str(err))
        return await claim.settle(ledger_unavailable().response)
    model_label = metrics.model_label(model, settings.routes)
    if entry is None:
        metrics.QUOTA_REFUSALS.labels(model_label).inc()
        return await claim.settle(
            ApiError(429, "daily token quota used up", "rate_limit_error", "quota_exceeded").response
        )
    router: Router = request.app.state.router
    try:
        answered = await first_answer(request.app.state.client, router, router.attempts(route, "interactive"), body)
    except asyncio.CancelledError:  # shutdown ended the wait: the row must not stay started
        ledger.close_entry(Outcome(entry, "client_aborted", None, 0, 0))
        claim.release_soon()  # nothing ran: a retry may
        raise
    if answered is None:
        ledger.close_entry(Outcome(entry, "failed", None, 0, 0))
        return await claim.settle(
            ApiError(502, "no model backend answered", "api_error", "backends_unavailable").response
        )
    upstream, attempt = answered.response, answered.attempt
    backend = attempt.label
    if upstream.status >= 400:
        metrics.BACKEND_ERRORS.labels(backend, "auth" if upstream.status in (401, 403) else "refused").inc()
        ledger.close_entry(Outcome(entry, "failed", backend, 0, 0))
        return await claim.settle(await refusal(upstream, settings))
    bound = usage_bound(body, settings.usage_bound_completion_tokens)
    answer = BackendAnswer(
        upstream,
        backend,
        entry,
        ledger,
        claim,
        bound,
        settings.usage_checkpoint_seconds,
        model_label,
        started,
        broke=lambda: router.failed(attempt, metrics.STREAM_BROKE),
        user_id=user_id,
        head=answered.head,
    )
    return answer.streamed() if body.get("stream") else await answer.whole()


def chat_request(raw: bytes) -> tuple[dict[str, Any], str]:
    """The request's JSON and the model it asks for; else 400."""
    try:
        body = json.loads(raw)
        model = body["model"]
        if not (isinstance(model, str) and isinstance(body.get("messages"), list)):
            raise ValueError("not a chat completion request")
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid chat completion request", "invalid_request_error", "invalid_request") from None
    return body, model


async def refusal(upstream: aiohttp.ClientResponse, settings: OrchestratorSettings) -> Response:
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
        return ApiError(
            502, "the model backend refused the orchestrator's credentials", "api_error", "backend_auth_failed"
        ).response
    error = backend_error(raw)
    return ApiError(
        upstream.status,
        error.get("message") or f"the model backend refused the request (HTTP {upstream.status})",
        error.get("type") or "invalid_request_error",
        error.get("code") or "upstream_refused",
    ).response
