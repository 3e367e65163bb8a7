"""The batch worker's process: two streaming pulls (the lines, and the dead letters) with flow
control, the sweeper, and GET /health for Kubernetes' probes.

google-cloud-pubsub calls back on its own threads; each message is handed to this event loop,
where it runs as a task, and is acked only once what it asked for is committed (lines.py).

On SIGTERM (uvicorn runs the app's shutdown): no new message is begun (those the client hands
over meanwhile are held, then handed back), the lines in flight get ``shutdown_seconds`` to
finish, the rest are cancelled (their claims released, their messages nacked), and the pulls
are closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse

# google-cloud-pubsub ships no type information (pyproject.toml's mypy override): its names are Any here.
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.futures import StreamingPullFuture
from google.cloud.pubsub_v1.subscriber.message import Message

from services.modelcalls.backends import CLOUD_PLATFORM, Backend, GoogleAccessToken
from services.modelcalls.database import create_pool
from services.modelcalls.ledger import OUTCOMES
from services.modelcalls.usage import MAX_TOKENS
from services.servicekit import logs
from services.servicekit.blobs import BlobStore
from services.servicekit.metrics import serve_metrics
from services.worker import metrics
from services.worker.finalize import Finalizer
from services.worker.lines import LineRunner
from services.worker.settings import WorkerSettings
from services.worker.sweeper import Sweeper

log = logging.getLogger("worker")
# What Pub/Sub sets on a message it moved to the dead-letter topic
# (cloud.google.com/pubsub/docs/handling-failures#track-delivery-attempts).
DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


class BadMessage(ValueError):
    """A message no worker can act on: acked (and logged), or it would come back for ever."""


def parse(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data)
    except ValueError:
        raise BadMessage("not JSON") from None
    if isinstance(message, dict) and message.get("kind") == "outcome":
        return outcome_message(message)
    if not isinstance(message, dict) or not isinstance(message.get("batch_id"), str):
        raise BadMessage("no batch_id")
    if message.get("kind") == "line":
        if not isinstance(message.get("line"), int) or isinstance(message["line"], bool):
            raise BadMessage("no line number")
    elif message.get("kind") != "check":
        raise BadMessage(f"unknown kind {message.get('kind')!r}")
    return message


def outcome_message(message: dict[str, Any]) -> dict[str, Any]:
    """An orchestrator's ledger outcome (services.orchestrator.batch.queue.outcome_message), checked."""
    try:
        uuid.UUID(message["entry"])
        tokens = [message["prompt_tokens"], message["completion_tokens"]]
        valid = (
            message["outcome"] in OUTCOMES
            and isinstance(message["backend"], str | None)
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_TOKENS for n in tokens)
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        valid = False
    if not valid:
        raise BadMessage("not a ledger outcome")
    return message


class Worker:
    def __init__(self, settings: WorkerSettings, conninfo: str | None = None) -> None:
        self.settings = settings
        self.conninfo = settings.conninfo() if conninfo is None else conninfo
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self.tasks: set[asyncio.Task[None]] = set()
        self.held: list[Message] = []  # handed over after SIGTERM: given back at the end
        # After SIGTERM: stopping, no message is begun (each is held, and its lease kept, so
        # that draining spends no delivery attempts); then closing, every message is handed
        # back as it comes, and the pulls are closed.
        self.stopping = self.closing = False
        self.pulls: list[StreamingPullFuture] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        settings = self.settings
        self.loop = asyncio.get_running_loop()
        tokens = GoogleAccessToken([CLOUD_PLATFORM])
        pool = create_pool(
            settings.database_auth,
            settings.database_pool_size,
            settings.database_timeout_seconds,
            self.conninfo,
            settings.database_server_ca,
        )
        await pool.open(wait=False)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=settings.max_request_seconds, sock_connect=settings.connect_timeout_seconds
            ),
            # Backends are asked for identity encoding; one that compresses anyway is decoded here.
            auto_decompress=True,
        ) as client:
            blobs = BlobStore(
                settings.batch_bucket,
                client,
                tokens if settings.storage_auth == "google-access-token" else None,
                settings.storage_url,
            )
            finalizer = Finalizer(pool, blobs)
            backends = {name: Backend(name, backend, tokens) for name, backend in settings.backends.items()}
            self.runner = LineRunner(settings, pool, client, backends, finalizer, self.worker_id)
            self.runner.router.start(client)
            self.finalizer = finalizer

            async def publish(data: bytes) -> None:
                await asyncio.wrap_future(publisher.publish(settings.topic, data))

            sweeper = asyncio.create_task(Sweeper(pool, finalizer, publish).run(settings.sweep_interval_seconds))
            flow = pubsub_v1.types.FlowControl(
                max_messages=settings.max_outstanding_messages,
                max_duration_per_lease_extension=settings.lease_extension_seconds,
            )
            self.pulls = [
                subscriber.subscribe(
                    subscription, self._receiver(handle), flow_control=flow, await_callbacks_on_shutdown=True
                )
                for subscription, handle in (
                    (settings.subscription, self._line),
                    (settings.dead_letter_subscription, self._dead_letter),
                )
            ]
            logs.event(log, "worker started", worker=self.worker_id, subscription=settings.subscription)
            try:
                yield
            finally:
                sweeper.cancel()
                await self._drain(subscriber)
                await self.runner.router.stop()
        publisher.stop()
        await pool.close(timeout=1)

    @property
    def healthy(self) -> bool:
        return bool(self.pulls) and not any(pull.done() for pull in self.pulls)

    def _receiver(self, handle: Callable[[dict[str, Any], Message], Awaitable[bool]]) -> Callable[[Message], None]:
        """The subscriber's callback (on its threads): the message, to this event loop."""

        def receive(message: Message) -> None:
            if self.closing:  # handed back before the client stops (it waits for its callbacks)
                message.nack()
                return
            self.loop.call_soon_threadsafe(self._begin, handle, message)

        return receive

    def _begin(self, handle: Callable[[dict[str, Any], Message], Awaitable[bool]], message: Message) -> None:
        if self.closing:
            message.nack()
            return
        if self.stopping:
            metrics.LEASE_EXTENSIONS.inc()
            self.held.append(message)
            return
        task = asyncio.create_task(self._settle(handle, message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _settle(self, handle: Callable[[dict[str, Any], Message], Awaitable[bool]], message: Message) -> None:
        try:
            done = await handle(parse(message.data), message)
        except BadMessage as err:
            logs.event(log, "message dropped", logging.ERROR, reason=str(err), message_id=message.message_id)
            done = True
        except asyncio.CancelledError:
            message.nack()
            raise
        except Exception:
            log.exception("message failed", extra={"fields": {"message_id": message.message_id}})
            done = False
        if done:
            message.ack()
        else:
            message.nack()

    async def _line(self, body: dict[str, Any], message: Message) -> bool:
        if body["kind"] == "outcome":
            return await self.runner.settle(body)
        if body["kind"] == "check":
            await self.finalizer.finish_if_done(body["batch_id"])
            return True
        return await self.runner.run(body["batch_id"], body["line"])

    async def _dead_letter(self, body: dict[str, Any], message: Message) -> bool:
        if body["kind"] == "outcome":
            try:
                return await self.runner.settle(body)
            except psycopg.Error as err:  # refused on every delivery: the dead-letter topic would loop it for ever
                logs.event(log, "ledger outcome dropped", logging.ERROR, error=type(err).__name__, **body)
                return True
        if body["kind"] == "line":
            delivered = message.attributes.get(DELIVERY_COUNT) or str(self.settings.max_delivery_attempts)
            await self.runner.dead_letter(body["batch_id"], body["line"], int(delivered))
        return True

    async def _drain(self, subscriber: pubsub_v1.SubscriberClient) -> None:
        self.stopping = True
        in_flight = set(self.tasks)
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=self.settings.shutdown_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2)
            logs.event(log, "worker drained", finished=len(in_flight) - len(late), handed_back=len(late))
        # Each nack frees flow control, so the client hands this worker the next message it
        # holds: that one too is handed back at once.
        self.closing = True
        for message in self.held:
            message.nack()

        def close() -> None:
            for pull in self.pulls:
                pull.cancel()  # the client hands back what it holds undelivered
                with contextlib.suppress(concurrent.futures.CancelledError, TimeoutError):
                    pull.result(timeout=5)
            subscriber.close()

        await asyncio.to_thread(close)


def create_app(settings: WorkerSettings, conninfo: str | None = None) -> FastAPI:
    """``conninfo`` overrides the database settings (tests); by default they come from ``settings``."""
    worker = Worker(settings, conninfo)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with worker.running():
            yield

    app = FastAPI(title="AI platform batch worker", version="1.0.0", lifespan=lifespan)
    app.state.worker = worker

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        # Kubernetes restarts a pod whose pulls have stopped.
        if worker.healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "not pulling"}, status_code=503)

    return app


def main() -> FastAPI:
    """The ASGI app uvicorn serves (``services.worker.app:main`` with --factory)."""
    settings = WorkerSettings()
    logs.configure(settings.log_level)
    serve_metrics(settings.metrics_address)
    return create_app(settings)
