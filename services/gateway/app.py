"""The gateway's HTTP API: POST /v1/chat/completions (streaming or not), GET /v1/models, OpenAI's
Batch API (files and batches, services.gateway.batch_input), GET /health, /openapi.json. The routes are
in services.gateway.routes, one resource a module; what they share, in services.gateway.deps."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.gateway.auth import JwksCache, Verifier
from services.gateway.batch_input import BatchCreateRequest, LineLimits
from services.gateway.deps import Gateway
from services.gateway.middleware import BodyDeadlines, RequestContext
from services.gateway.openapi import with_bodies
from services.gateway.protocol import HttpToolsWithHeaderDeadline
from services.gateway.ratelimit import RateLimiter, limiter_for
from services.gateway.routes import batches, chat, files, health, models, usage
from services.gateway.settings import GatewaySettings
from services.gateway.uploads import UploadSlots
from services.servicekit import logs
from services.servicekit.chat import ChatCompletionRequest
from services.servicekit.errors import install_error_handlers
from services.servicekit.identity import IdTokenSource, NoToken
from services.servicekit.metrics import serve_metrics


def create_app(settings: GatewaySettings) -> FastAPI:
    app = FastAPI(title="AI platform gateway", version="1.0.0", lifespan=lifespan)
    app.state.gateway = Gateway(
        settings=settings,
        limiter=limiter_for(settings),
        readers=RateLimiter(settings.read_rate_limit_per_minute, settings.read_rate_limit_burst),
        identity=(
            IdTokenSource(settings.orchestrator_audience or settings.orchestrator_url)
            if settings.orchestrator_auth == "google-id-token"
            else NoToken()
        ),
        uploads=UploadSlots(settings.batch_concurrent_uploads, settings.batch_concurrent_uploads_per_user),
        line_limits=LineLimits(
            max_lines=settings.batch_max_lines,
            max_line_bytes=settings.max_body_bytes,
            max_messages=settings.max_messages,
            max_message_chars=settings.max_message_chars,
        ),
    )
    deadlines = BodyDeadlines(
        body_idle_timeout=settings.body_idle_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        upload_timeout=settings.batch_upload_timeout_seconds,
        upload_min_rate=settings.batch_upload_min_bytes_per_second,
    )
    app.add_middleware(RequestContext, deadlines=deadlines)
    if origins := [o.strip() for o in settings.allowed_origins.split(",") if o.strip()]:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            # The chat page posts chats and reads its models and usage; the batch page also
            # lists, reads and downloads (GET).
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "idempotency-key", "x-request-id"],
            expose_headers=["idempotent-replayed", "retry-after", "x-request-id"],
            max_age=600,
        )
    install_error_handlers(app)
    for routes in (health, chat, models, usage, files, batches):
        app.include_router(routes.router)
    # FastAPI's documented way to extend its OpenAPI document.
    app.openapi = with_bodies(app, (ChatCompletionRequest, BatchCreateRequest))  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: Gateway = app.state.gateway
    settings = state.settings
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
            await state.limiter.close()


def main() -> FastAPI:
    """The ASGI app uvicorn serves (``services.gateway.app:main`` with --factory)."""
    settings = GatewaySettings()
    logs.configure(settings.log_level)
    serve_metrics(settings.metrics_address)
    HttpToolsWithHeaderDeadline.header_timeout = settings.header_timeout_seconds  # the image's --http
    app = create_app(settings)
    # Start-up objects never die: keep them out of the collector's full passes, which
    # otherwise pause every stream at once (measured: tens of ms at p99).
    gc.collect()
    gc.freeze()
    return app
