"""The orchestrator, asked on behalf of an admitted caller, and its answer passed on as it comes."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import aiohttp
import google.auth.exceptions
from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from services.gateway.deps import Gateway, Reader, User, shared
from services.servicekit import logs
from services.servicekit.errors import ApiError, stream_broke_event

log = logging.getLogger("gateway")
# Headers of the orchestrator's answer the caller may see. Its bytes pass unchanged, so an
# answer compressed all the same keeps its Content-Encoding.
PASSED_HEADERS = ("content-encoding", "content-type", "idempotent-replayed", "retry-after", "x-request-id")
STREAM_BROKE = stream_broke_event()


def upstream_auth_failed() -> ApiError:
    return ApiError(502, "cannot authenticate to the model service", "api_error", "upstream_auth")


class Orchestrator:
    """A dependency: the orchestrator, for this request's admitted caller."""

    def __init__(self, request: Request, state: Gateway, user_id: str) -> None:
        self.request, self.state, self.user_id = request, state, user_id

    async def open(
        self,
        method: str,
        path: str,
        *,
        data: bytes | str | None = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse:
        """The orchestrator's answer (its status and headers; the body still to read); else 502."""
        try:
            credentials = await self.state.identity.header()
        except google.auth.exceptions.GoogleAuthError as err:
            logs.event(log, "no ID token for the orchestrator", logging.ERROR, error=type(err).__name__)
            raise upstream_auth_failed() from None
        headers = {**credentials, "x-user-id": self.user_id, "x-request-id": logs.request_id.get() or ""}
        if data is not None:
            headers["content-type"] = content_type
        # The orchestrator holds the keys (in its database, for every instance) and checks them.
        if (key := self.request.headers.get("idempotency-key")) is not None:
            headers["idempotency-key"] = key
        client: aiohttp.ClientSession = self.request.app.state.client
        url = self.state.orchestrator + path
        try:
            upstream = await client.request(method, url, data=data, params=params, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as err:
            logs.event(log, "orchestrator unreachable", logging.ERROR, error=type(err).__name__)
            raise ApiError(502, "the model service is unreachable", "api_error", "upstream_unavailable") from None
        if upstream.status in (401, 403):
            # The orchestrator (or Cloud Run before it) refused the gateway's own identity, not
            # the user's token: passed on, the user would be told to sign in again.
            upstream.release()
            logs.event(log, "orchestrator refused our credentials", logging.ERROR, status=upstream.status)
            raise upstream_auth_failed()
        return upstream


def relayed(upstream: aiohttp.ClientResponse) -> Response:
    """For the batch routes: the orchestrator's answer, as it comes. A file's content that
    breaks off cannot say so in its body: the connection is cut instead."""
    return UpstreamStream(upstream, passed_headers(upstream), broken_tail=None)


def passed_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}


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
        content = self.upstream.content
        try:
            async for chunk in content.iter_any():
                # A chunk that came with the answer's end carries the end on: one write to the
                # client, not two.
                if content.at_eof():
                    await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    return
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


# The dependencies are coroutines, as every dependency of the gateway's: FastAPI runs a plain
# function (or a class) in its thread pool, two thread switches for every request.
async def orchestrator(request: Request, user_id: User) -> Orchestrator:
    """The orchestrator, for an admitted caller."""
    return Orchestrator(request, shared(request), user_id)


async def reading_orchestrator(request: Request, user_id: Reader) -> Orchestrator:
    """The orchestrator, for an authenticated caller's read, within the reads' limit (deps.Reader)."""
    return Orchestrator(request, shared(request), user_id)


Upstream = Annotated[Orchestrator, Depends(orchestrator)]
ReadUpstream = Annotated[Orchestrator, Depends(reading_orchestrator)]
