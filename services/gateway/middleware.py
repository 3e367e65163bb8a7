"""The gateway's one middleware: request ids, one log line and the metrics per request, and the
body's deadlines."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway import metrics
from services.gateway.routes.files import UPLOAD_PATH
from services.servicekit import logs
from services.servicekit.errors import ApiError

log = logging.getLogger("gateway")


class BodyTimeout(Exception):
    """The client did not send its request body in time."""


@dataclass(frozen=True)
class BodyDeadlines:
    """A request body has ``body_timeout`` in all, with no pause over ``body_idle_timeout``. A
    batch file's upload (POST /v1/files) has ``body_timeout`` and a second more for every
    ``upload_min_rate`` bytes received, up to ``upload_timeout``: a large file may take long, a
    client that trickles it may not hold its upload slot for long."""

    body_idle_timeout: float
    body_timeout: float
    upload_timeout: float
    upload_min_rate: float

    def allowed(self, upload: bool) -> str:
        """The deadlines, as the 408 states them."""
        whole = (
            f"an upload has {self.body_timeout:g} s and a second more for every {self.upload_min_rate} bytes"
            if upload
            else f"a request body has {self.body_timeout:g} s"
        )
        return f"{whole}, with no pause over {self.body_idle_timeout:g} s"


class _Exchange:
    """One request's receive and send, as RequestContext wraps them."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, deadlines: BodyDeadlines, rid: str) -> None:
        self.receive_from, self.send_to, self.deadlines, self.rid = receive, send, deadlines, rid
        headers = dict(scope["headers"])
        self.status, self.responded = 500, False
        self.body_pending = b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"
        self.head_at, self.received = time.monotonic(), 0
        self.upload = scope["path"] == UPLOAD_PATH

    def deadline(self) -> float:
        d = self.deadlines
        if not self.upload:
            return self.head_at + d.body_timeout
        earned = d.body_timeout + self.received / d.upload_min_rate
        return self.head_at + min(earned, d.upload_timeout)

    async def receive(self) -> Message:
        if not self.body_pending:
            return await self.receive_from()  # after the body, only the client leaving: no deadline
        try:
            async with asyncio.timeout(min(self.deadlines.body_idle_timeout, self.deadline() - time.monotonic())):
                message = await self.receive_from()
        except TimeoutError:
            raise BodyTimeout from None
        self.received += len(message.get("body", b""))
        self.body_pending = message["type"] == "http.request" and message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.responded = message["status"], True
            extra = [(b"x-request-id", self.rid.encode())]
            if self.body_pending:
                # Answered before the body was read (401, 413, 429, 408): close the connection
                # after this answer, or uvicorn reads the rest for as long as the client sends it.
                extra.append((b"connection", b"close"))
            message["headers"] = [*message.get("headers", []), *extra]
        await self.send_to(message)


class RequestContext:
    """Pure ASGI middleware (a streamed body passes straight through): sets the request id,
    returns it in X-Request-Id, logs one line per request with status and latency, and holds
    the client to the body's deadlines (uvicorn has none): 408, and the connection closed."""

    def __init__(self, app: ASGIApp, deadlines: BodyDeadlines) -> None:
        self.app, self.deadlines = app, deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if given and len(given) <= 64 and given.replace("-", "").isalnum() else uuid.uuid4().hex
        logs.request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        exchange = _Exchange(scope, receive, send, self.deadlines, rid)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BodyTimeout:
            if exchange.responded:
                raise
            logs.event(log, "request body too slow", logging.WARNING)
            late = ApiError(
                408,
                f"the request body did not arrive in time ({self.deadlines.allowed(exchange.upload)})",
                "invalid_request_error",
                "request_timeout",
            ).response
            await late(scope, receive, exchange.send)
        finally:
            elapsed = time.perf_counter() - started
            route = metrics.route_of(scope)
            metrics.REQUESTS.labels(route, str(exchange.status)).inc()
            metrics.DURATION.labels(route).observe(elapsed)
            logs.event(
                log,
                "request",
                method=scope["method"],
                path=scope["path"],
                status=exchange.status,
                latency_ms=round(elapsed * 1000, 1),
            )
