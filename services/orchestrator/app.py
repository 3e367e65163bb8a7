"""The orchestrator's HTTP API: POST /v1/chat/completions (services.orchestrator.routes.chat),
GET /v1/models, the batch routes (services.orchestrator.batch.routes) and GET /health.

Reached only from the gateway (internal ingress; run.invoker for the gateway alone),
which passes the authenticated user in X-User-Id.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import Depends, FastAPI

from services.modelcalls.backends import CLOUD_PLATFORM, Backend, GoogleAccessToken
from services.modelcalls.database import create_pool
from services.modelcalls.health import Router
from services.modelcalls.ledger import HANDOFF_SECONDS, Ledger
from services.orchestrator import metrics
from services.orchestrator.batch import routes as batch_routes
from services.orchestrator.batch.queue import Publisher, outcome_message
from services.orchestrator.batch.store import BatchStore
from services.orchestrator.callers import CERTS_CACHE_SECONDS, CERTS_MIN_REFRESH_SECONDS, CallerCheck, require_caller
from services.orchestrator.idempotency import IdempotencyKeys
from services.orchestrator.routes import chat, health, models, usage
from services.orchestrator.settings import OrchestratorSettings
from services.servicekit import logs
from services.servicekit.blobs import BlobStore
from services.servicekit.errors import install_error_handlers
from services.servicekit.jwks import JwksCache
from services.servicekit.metrics import serve_metrics

log = logging.getLogger("orchestrator")


def create_app(settings: OrchestratorSettings, conninfo: str | None = None) -> FastAPI:
    """``conninfo`` overrides the database settings (tests); by default they come from ``settings``."""
    app = FastAPI(title="AI platform orchestrator", version="1.0.0", lifespan=lifespan)
    app.state.settings, app.state.conninfo = settings, conninfo
    app.state.tokens = GoogleAccessToken([CLOUD_PLATFORM])
    app.state.backends = {name: Backend(name, b, app.state.tokens) for name, b in settings.backends.items()}
    app.state.router = Router(settings, app.state.backends, on_failure=metrics.backend_failed)
    metrics.preset(settings.routes, list(settings.backends))
    app.state.batches = None
    install_error_handlers(app)
    app.include_router(health.router)
    guarded = [Depends(require_caller)] if settings.caller_auth == "google-id-token" else []
    if not guarded:
        # Said at every start, where it shows: the routes bill whoever X-User-Id names.
        logs.event(
            log, "caller check OFF (CALLER_AUTH=none): any caller is served; for local runs only", logging.WARNING
        )
    for routes in (chat, models, usage, batch_routes):
        app.include_router(routes.router, dependencies=guarded)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: OrchestratorSettings = app.state.settings
    ledger = await open_ledger(settings, app.state.conninfo)
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
        app.state.router.start(client)
        if settings.caller_audience is not None:
            certs = JwksCache(settings.caller_certs_url, client, CERTS_CACHE_SECONDS, CERTS_MIN_REFRESH_SECONDS)
            app.state.callers = CallerCheck(certs, settings.caller_audience, settings.callers)
        app.state.idempotency = IdempotencyKeys(
            ledger, settings.idempotency_window_seconds, settings.max_request_seconds + settings.stale_margin_seconds
        )
        if settings.batch_bucket and settings.batch_topic:
            await start_batches(app, settings.batch_bucket, settings.batch_topic, ledger, client)
        try:
            yield
        finally:
            await app.state.router.stop()
            await ledger.stop()  # before the publisher closes: it may hand outcomes to it
            if app.state.batches:
                app.state.publisher.close()


async def open_ledger(settings: OrchestratorSettings, conninfo: str | None) -> Ledger:
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
    ledger.on_write = metrics.ledger_write
    await ledger.start()
    try:
        await ledger.migrate()
    except Exception as err:  # the database may be down: migrations are retried on first use
        logs.event(log, "migrations deferred", logging.WARNING, error=type(err).__name__)
    return ledger


async def start_batches(app: FastAPI, bucket: str, topic: str, ledger: Ledger, client: aiohttp.ClientSession) -> None:
    """The batch routes' store, and Pub/Sub for the outcomes the ledger hands off at shutdown."""
    settings: OrchestratorSettings = app.state.settings
    app.state.publisher = Publisher(topic)
    # Pub/Sub outlives the instance, and keeps a message till the workers (which hold the
    # ledger's credentials too) write it: a charge survives shutdown with the database down.
    # A file would die with Cloud Run's in-memory filesystem.
    ledger.handoff = lambda outcomes: app.state.publisher.publish(
        [outcome_message(o.fields()) for o in outcomes], HANDOFF_SECONDS
    )
    tokens = app.state.tokens if settings.storage_auth == "google-access-token" else None
    blobs = BlobStore(bucket, client, tokens, settings.storage_url)
    timeout = settings.batch_create_timeout_seconds
    app.state.batches = BatchStore(
        ledger, blobs, app.state.publisher, timeout, timeout, settings.batch_worker_database_user
    )
    try:
        await app.state.batches.grant_worker()
    except Exception as err:  # the database or the workers' user not there yet: retried later
        logs.event(log, "batch privileges deferred", logging.WARNING, error=repr(err)[:500])


def main() -> FastAPI:
    """The ASGI app uvicorn serves (``services.orchestrator.app:main`` with --factory)."""
    settings = OrchestratorSettings()
    logs.configure(settings.log_level)
    serve_metrics(settings.metrics_address)
    return create_app(settings)
