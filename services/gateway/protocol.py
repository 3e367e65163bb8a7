"""uvicorn's httptools protocol, with a deadline for each request's head.

uvicorn times out no read but the idle time between requests (--timeout-keep-alive), and
every byte received restarts even that: a client that opens a connection and sends
nothing, or sends its headers a byte a second, holds the connection for as long as it
likes (the --timeout-request-start flag proposed in Kludex/uvicorn#1685 was never merged).
An ASGI app cannot help: it is called once the head is complete. The image runs uvicorn
with ``--http services.gateway.protocol:HttpToolsWithHeaderDeadline``; the body's deadlines are the
app's (``RequestContext``), where a late body can still be answered with a 408.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpToolsWithHeaderDeadline(HttpToolsProtocol):
    # From a new connection, or the first byte of a request on a kept-alive one, until the
    # end of the request's head. The app factory sets it from HEADER_TIMEOUT_SECONDS.
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's: a Transport, not any BaseTransport
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self.header_deadline is None:
            # Closed without an answer: the head may be cut anywhere, even mid-line.
            self.header_deadline = self.loop.call_later(self.header_timeout, self.transport.close)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None
